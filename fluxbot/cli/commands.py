"""What each CLI sub-command does (argument parsing lives in `fluxbot.cli.main`)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from fluxbot.config import Settings
from fluxbot.core.requests import AnimationSpec, GenerationRequest, GenerationResult, RequestError

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
    "(Bot > Reset Token), invite it with the applications.commands and bot scopes, then put "
    "DISCORD_TOKEN=... in a .env file in this directory (see .env.example) or export it."
)


def build_request(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    """A validated request from CLI options and the prompt's inline flags (as the bot does it)."""
    from fluxbot.app.root import build_composer
    from fluxbot.core.seeds import random_seed

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
    from fluxbot.devices.discovery import discover_devices, select_devices

    return select_devices(settings.gpus, discover_devices())[0].torch_device


class ModelUnavailable(Exception):
    """The model could not be loaded; the message says what to download (exit code 1)."""


def _generate_one(
    args: argparse.Namespace, settings: Settings, request: GenerationRequest, desc: str
) -> GenerationResult:
    """Load the model on the chosen device and run one request with a progress bar."""
    from tqdm import tqdm

    from fluxbot.engine.pipeline import FluxRunner, ModelLoadError

    try:
        runner = FluxRunner.load(settings.model, pick_device(settings, args.device))
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
    with tqdm(total=request.steps, desc=desc, unit="step", file=sys.stderr, leave=False) as bar:
        return runner.generate([request], on_step=lambda _p: bar.update(1))[0]


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
    from fluxbot.engine.encoding import encode_png

    request = build_request(args, settings)
    result = _generate_one(args, settings, request, "denoising")
    params = dict(request.to_params(), model=settings.model)
    for path, image, seed in zip(
        output_paths(args.out, request.count), result.images, result.seeds, strict=True
    ):
        _write_atomic(path, encode_png(image, params, seed).data)
        print(f"{path}  seed={seed}  {image.width}x{image.height}")
    return 0


def animate(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.core.seeds import random_seed
    from fluxbot.engine.animation import GifTooLarge, encode_gif

    base = build_request(args, settings)
    seed_to = args.seed_to if args.seed_to is not None else random_seed()
    spec = AnimationSpec(frames=args.frames, seed_to=seed_to, prompt_to=args.prompt_to)
    request = replace(base, animation=spec)
    result = _generate_one(args, settings, request, f"{spec.frames} frames")
    try:
        gif = encode_gif(result.images, args.max_bytes, fps=args.fps)
    except GifTooLarge as exc:
        raise RequestError("max-bytes", args.max_bytes, str(exc)) from None
    _write_atomic(args.out, gif.data)
    notes = f" ({', '.join(gif.notes)})" if gif.notes else ""
    print(f"{args.out}  seeds={request.seed}->{seed_to}  {gif.frames} frames{notes}")
    return 0


def gpus(settings: Settings) -> int:
    from fluxbot.app.device_report import format_device_table, gpu_report
    from fluxbot.devices.discovery import discover_devices

    print(format_device_table(gpu_report(settings, discover_devices())))
    return 0


async def db_upgrade(settings: Settings) -> int:
    from fluxbot.store import upgrade_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade_database(settings.db_url)
    print(f"database is up to date: {settings.db_url}")
    return 0


async def export(settings: Settings, user_id: int, out: Path) -> int:
    from fluxbot.app.export import export_user
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
    from fluxbot.bot.client import run

    return run(settings)
