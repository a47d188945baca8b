"""`fluxbot vary|upscale|zoom|pan (JOB_ID|FILE)` and `generate --image`: the bot's image
operations from the terminal, built by the same `Deriver` the bot uses."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from fluxbot.app.derive import Deriver
from fluxbot.app.uploads import Upload, check_upload
from fluxbot.config import Settings
from fluxbot.core.edits import VARY_STRONG, VARY_SUBTLE, Operation
from fluxbot.core.requests import GenerationRequest, RequestError
from fluxbot.engine.encoding import read_parameters
from fluxbot.store import Store


def read_image(path: Path) -> Upload:
    """An image file checked like a Discord upload (type by content, size, dimensions)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RequestError("image", str(path), f"a readable file ({exc.strerror})") from None
    return check_upload(data, "image")


def _deriver(settings: Settings, store: Store | None = None) -> Deriver:
    from fluxbot.app.root import build_composer

    return Deriver(store, build_composer(settings), upscale_tile=settings.upscale_tile)


def image_prompt(
    request: GenerationRequest, path: Path, strength: float | None, settings: Settings
) -> GenerationRequest:
    """`generate --image FILE --strength S`: img2img from the file at its aspect ratio."""
    return _deriver(settings).from_upload(read_image(path), request, strength)


def _operation_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {"seed": args.seed}
    match args.command:
        case "vary":
            default = VARY_STRONG if args.strong else VARY_SUBTLE
            options["strength"] = args.strength if args.strength is not None else default
        case "upscale":
            options["strength"] = args.strength
        case "zoom":
            options["zoom"] = args.factor
        case "pan":
            options["pan"] = args.direction
    return options


def _from_file(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    upload = read_image(Path(args.source))
    params = read_parameters(upload.data) if upload.format == "png" else {}
    prompt = args.prompt or params.get("prompt")
    if not prompt:
        raise RequestError("--prompt", None, "a prompt (this image carries no fluxbot parameters)")
    base = GenerationRequest(
        prompt=prompt,
        seed=int(params.get("seed", 0)),
        negative=str(params.get("negative", "")),
        steps=int(params.get("steps", 4)),
    )
    request, _ = _deriver(settings).build(
        upload, base, base.seed, Operation(args.command), **_operation_options(args)
    )
    return request


async def _from_job(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    store = await Store.open(settings)
    try:
        parent = await store.jobs.by_public_id(args.source)
        if parent is None:
            raise RequestError("JOB_ID|FILE", args.source, "a job id from the store or a file")
        job = await _deriver(settings, store).from_job(
            parent,
            parent.user_id,
            Operation(args.command),
            index=args.index - 1,
            admin=True,  # the operator's own terminal
            **_operation_options(args),  # type: ignore[arg-type]
        )
        return job.request
    finally:
        await store.close()


def edit(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.cli.commands import prepare_output, write_results

    fmt, device = prepare_output(args, settings)
    if Path(args.source).is_file():
        request = _from_file(args, settings)
    else:
        request = asyncio.run(_from_job(args, settings))
    assert request.edit is not None
    print(f"fluxbot: {request.edit.describe()}", file=sys.stderr)
    write_results(args, settings, request, fmt, device)
    return 0
