"""What each CLI sub-command does (argument parsing lives in `fluxbot.__main__`)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from fluxbot.config import Settings
from fluxbot.requests import AnimationSpec, GenerationRequest, RequestError

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
    "(Bot > Reset Token), invite it with the applications.commands and bot scopes, then put "
    "DISCORD_TOKEN=... in a .env file in this directory (see .env.example) or export it."
)


def build_request(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    """A validated request from CLI options and the prompt's inline flags (as the bot does it)."""
    from fluxbot.engine import build_composer
    from fluxbot.seeds import random_seed

    draft = build_composer(settings).draft(
        args.prompt,
        negative=args.negative,
        seed=args.seed,
        aspect=args.aspect,
        steps=args.steps,
        count=getattr(args, "count", None),
        width=args.width,
        height=args.height,
        strict=False,  # the operator's own machine: only the never-allowed list applies
    )
    for notice in draft.notices:
        print(f"fluxbot: {notice}", file=sys.stderr)
    return draft.finish(draft.seed if draft.seed is not None else random_seed())


def pick_device(settings: Settings, override: str | None) -> str:
    """The torch device a one-off CLI generation runs on: --device, else the first selected."""
    if override:
        return override
    from fluxbot.gpu import discover_devices, select_devices

    return select_devices(settings.gpus, discover_devices())[0].torch_device


def _runner(settings: Settings, device: str) -> Any:
    from fluxbot.pipeline import FluxRunner

    return FluxRunner.load(settings.model, device)


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as handle:
        handle.write(data)
        temp = Path(handle.name)
    os.replace(temp, path)


def output_paths(out: Path, count: int) -> list[Path]:
    """`fox.png` for one image; `fox-1.png` ... `fox-4.png` for a batch."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.png'}") for i in range(count)]


def generate(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.images import encode_png
    from fluxbot.pipeline import ModelLoadError

    request = build_request(args, settings)
    device = pick_device(settings, args.device)
    try:
        runner = _runner(settings, device)
    except ModelLoadError as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return 1
    bar = _progress_bar(request.steps, "denoising")
    try:
        result = runner.generate([request], on_step=lambda p: bar.update(1))[0]
    finally:
        bar.close()
    params = dict(request.to_params(), model=settings.model)
    for path, image, seed in zip(
        output_paths(args.out, request.count), result.images, result.seeds, strict=True
    ):
        _write_atomic(path, encode_png(image, params, seed).data)
        print(f"{path}  seed={seed}  {image.width}x{image.height}")
    return 0


def animate(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.animation import GifTooLarge, encode_gif
    from fluxbot.seeds import random_seed
    from fluxbot.pipeline import ModelLoadError

    base = build_request(args, settings)
    seed_to = args.seed_to if args.seed_to is not None else random_seed()
    spec = AnimationSpec(frames=args.frames, seed_to=seed_to, prompt_to=args.prompt_to)
    request = GenerationRequest(**{**_request_fields(base), "animation": spec})
    device = pick_device(settings, args.device)
    try:
        runner = _runner(settings, device)
    except ModelLoadError as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return 1
    bar = _progress_bar(request.steps, f"{spec.frames} frames")
    try:
        result = runner.generate([request], on_step=lambda p: bar.update(1))[0]
    finally:
        bar.close()
    try:
        gif = encode_gif(result.images, args.max_bytes, fps=args.fps)
    except GifTooLarge as exc:
        raise RequestError("max-bytes", args.max_bytes, str(exc)) from None
    _write_atomic(args.out, gif.data)
    notes = f" ({', '.join(gif.notes)})" if gif.notes else ""
    print(f"{args.out}  seeds={request.seed}->{seed_to}  {gif.frames} frames{notes}")
    return 0


def _request_fields(request: GenerationRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in GenerationRequest.__dataclass_fields__}


def gpus(settings: Settings) -> int:
    from fluxbot.gpu import discover_devices, format_device_table, gpu_report

    print(format_device_table(gpu_report(settings, discover_devices())))
    return 0


async def db_upgrade(settings: Settings) -> int:
    from fluxbot.store import upgrade_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade_database(settings.db_url)
    print(f"database is up to date: {settings.db_url}")
    return 0


async def export(settings: Settings, user_id: int, out: Path) -> int:
    from fluxbot.export import export_user
    from fluxbot.store import Store

    store = await Store.open(settings)
    try:
        count = await export_user(store, user_id, out)
    finally:
        await store.close()
    print(f"{out}: {count} image(s) of user {user_id}")
    return 0


def run_bot(settings: Settings) -> int:
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        print(f"fluxbot: error: {TOKEN_HELP}", file=sys.stderr)
        return 2
    from fluxbot.bot import run

    return run(settings)
