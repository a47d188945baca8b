"""`fluxbot vary|upscale|zoom|pan (JOB_ID|FILE)` and `generate --image`: the bot's image
operations from the terminal, built by the same `Deriver` the bot uses."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from fluxbot.cli.commands import deriver, prepare_output, read_image, write_results
from fluxbot.config import Settings
from fluxbot.core.edits import VARY_STRONG, VARY_SUBTLE, Operation
from fluxbot.core.requests import GenerationRequest, RequestError
from fluxbot.engine.encoding import read_parameters
from fluxbot.store import Store


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
    options: dict[str, Any] = _operation_options(args)
    request, _ = deriver(settings).build(
        upload, base, base.seed, Operation(args.command), **options
    )
    return request


async def _from_job(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    store = await Store.open(settings)
    try:
        parent = await store.jobs.by_public_id(args.source)
        if parent is None:
            raise RequestError("JOB_ID|FILE", args.source, "a job id from the store or a file")
        job = await deriver(settings, store).from_job(
            parent,
            parent.user_id,
            Operation(args.command),
            index=args.index - 1,
            admin=True,  # the operator's own terminal
            # The ignore below: argparse's options, checked by Deriver.build.
            **_operation_options(args),  # type: ignore[arg-type]
        )
        return job.request
    finally:
        await store.close()


def edit(args: argparse.Namespace, settings: Settings) -> int:
    fmt, device = prepare_output(args, settings)
    if Path(args.source).is_file():
        request = _from_file(args, settings)
    else:
        request = asyncio.run(_from_job(args, settings))
    assert request.edit is not None
    print(f"fluxbot: {request.edit.describe()}", file=sys.stderr)
    write_results(args, settings, request, fmt, device)
    return 0
