"""What each CLI sub-command does (argument parsing lives in `fluxbot.cli.main`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fluxbot.app.preflight import (
    PreflightError,
    check_model,
    check_output_file,
    check_store,
    sqlite_path,
)
from fluxbot.config import Backend, Settings
from fluxbot.core.errors import UserError
from fluxbot.core.requests import AnimationSpec, GenerationRequest, GenerationResult, RequestError

if TYPE_CHECKING:
    from fluxbot.app.derive import Deriver
    from fluxbot.app.uploads import Upload
    from fluxbot.store import Store

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create a bot at https://discord.com/developers/applications "
    "(Bot > Reset Token), invite it with the applications.commands and bot scopes, then put "
    "DISCORD_TOKEN=... in a .env file in this directory (see .env.example) or export it."
)


def build_request(args: argparse.Namespace, settings: Settings) -> GenerationRequest:
    """A validated request from CLI options and the prompt's inline flags (as the bot does it)."""
    from fluxbot.app.root import build_composer
    from fluxbot.app.styles import load_styles
    from fluxbot.core.seeds import random_seed

    style_name = getattr(args, "style", None)
    style = load_styles(settings).require(style_name) if style_name else None
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
        style=style,
    )
    for notice in draft.notices:
        print(f"fluxbot: {notice}", file=sys.stderr)
    return draft.finish(draft.seed if draft.seed is not None else random_seed())


def pick_device(settings: Settings, override: str | None) -> str:
    """The torch device a one-off CLI generation runs on: --device (one that exists here),
    else the first FLUXBOT_GPUS selects."""
    from fluxbot.devices.discovery import discover_devices, select_devices

    devices = discover_devices()
    if not override:
        return select_devices(settings.gpus, devices)[0].torch_device
    wanted = override.strip().lower()
    if wanted in ("cuda", "xpu"):
        wanted += ":0"
    names = [d.torch_device for d in devices]
    if wanted not in names:
        raise PreflightError(
            f"--device {override!r} is not a device on this machine: use one of {', '.join(names)}"
        )
    return wanted


def _model_setting(args: argparse.Namespace) -> str:
    return "--model" if getattr(args, "model", None) else "FLUXBOT_MODEL"


def output_format(out: Path) -> str:
    """The image format `--out`'s extension asks for; other extensions are refused."""
    from fluxbot.engine.encoding import EXTENSION_FORMATS

    fmt = EXTENSION_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise PreflightError(
            f"--out {str(out)!r}: the file name must end in {', '.join(EXTENSION_FORMATS)} "
            "(the format follows the extension)"
        )
    return fmt


class ModelUnavailable(UserError):
    """The model could not be loaded; the message says what to download (exit code 1)."""


def _generate_one(
    request: GenerationRequest, model: str, device: str, desc: str
) -> GenerationResult:
    """Load the model on the chosen device and run one request with a progress bar."""
    from tqdm import tqdm

    from fluxbot.engine.pipeline import FluxRunner, ModelLoadError

    try:
        runner = FluxRunner.load(model, device, loras=[request.lora] if request.lora else [])
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
    from fluxbot.engine.lora import LoraError

    total = request.denoise_steps * request.tiles
    with tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False) as bar:
        try:
            return runner.generate([request], on_step=lambda _p: bar.update(1))[0]
        except LoraError as exc:
            raise ModelUnavailable(f"style {request.style!r}: {exc}") from exc


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
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(count)]


def generate(args: argparse.Namespace, settings: Settings) -> int:
    fmt, device = prepare_output(args, settings)
    request = build_request(args, settings)
    if getattr(args, "image", None) is not None:
        request = image_prompt(request, args.image, args.strength, settings)
    elif getattr(args, "strength", None) is not None:
        raise RequestError("strength", args.strength, "used only with --image")
    write_results(args, settings, request, fmt, device)
    return 0


def read_image(path: Path) -> Upload:
    """An image file checked like a Discord upload (type by content, size, dimensions)."""
    from fluxbot.app.uploads import check_upload

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RequestError("image", str(path), f"a readable file ({exc.strerror})") from None
    return check_upload(data, "image")


def deriver(settings: Settings, store: Store | None = None) -> Deriver:
    """The bot's builder of image jobs, under this operator's settings."""
    from fluxbot.app.derive import Deriver
    from fluxbot.app.root import build_composer

    return Deriver(store, build_composer(settings), upscale_tile=settings.upscale_tile)


def image_prompt(
    request: GenerationRequest, path: Path, strength: float | None, settings: Settings
) -> GenerationRequest:
    """`generate --image FILE --strength S`: img2img from the file at its aspect ratio."""
    return deriver(settings).from_upload(read_image(path), request, strength)


def prepare_output(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """Check --out, the model and --device before any work; (output format, device)."""
    fmt = output_format(args.out)
    check_output_file(args.out)
    check_model(settings.model, _model_setting(args))
    return fmt, pick_device(settings, args.device)


def write_results(
    args: argparse.Namespace,
    settings: Settings,
    request: GenerationRequest,
    fmt: str,
    device: str,
) -> None:
    """Run `request` and write its images (PNG, JPEG or WebP by --out) with their parameters."""
    from fluxbot.engine.encoding import encode_image

    paths = output_paths(args.out, request.count)
    for path in paths[1:]:
        check_output_file(path)
    result = _generate_one(request, settings.model, device, "denoising")
    params = dict(request.to_params(), model=settings.model)
    for path, image, seed in zip(paths, result.images, result.seeds, strict=True):
        _write_atomic(path, encode_image(image, params, seed, fmt).data)
        print(f"{path}  seed={seed}  {image.width}x{image.height}")


def animate(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.core.seeds import random_seed
    from fluxbot.engine.animation import GifTooLarge, encode_gif

    # Everything is checked before the model loads: a bad --fps used to fail after all frames.
    seed_to = args.seed_to if args.seed_to is not None else random_seed()
    spec = AnimationSpec(
        frames=args.frames, seed_to=seed_to, prompt_to=args.prompt_to, fps=args.fps
    )
    if args.max_bytes < 1:
        raise RequestError("max-bytes", args.max_bytes, "a positive number of bytes")
    if args.out.suffix.lower() != ".gif":
        raise PreflightError(f"--out {str(args.out)!r}: an animation is written as a .gif file")
    check_output_file(args.out)
    check_model(settings.model, _model_setting(args))
    device = pick_device(settings, args.device)
    request = replace(build_request(args, settings), animation=spec)
    result = _generate_one(request, settings.model, device, f"{spec.frames} frames")
    try:
        gif = encode_gif(result.images, args.max_bytes, fps=args.fps)
    except GifTooLarge as exc:
        raise RequestError("max-bytes", args.max_bytes, str(exc)) from None
    _write_atomic(args.out, gif.data)
    notes = f" ({', '.join(gif.notes)})" if gif.notes else ""
    print(f"{args.out}  seeds={request.seed}->{seed_to}  {gif.frames} frames{notes}")
    return 0


def styles(settings: Settings) -> int:
    """Check the styles file (every LoRA opened and fitted to the model) and list it."""
    from fluxbot.app.styles import load_styles

    catalog = load_styles(settings)
    if not len(catalog):
        print(f"no styles: create {settings.styles_path} or set FLUXBOT_STYLES (see README)")
        return 0
    print(f"{len(catalog)} style(s) in {catalog.path}:")
    width = max(len(style.name) for style in catalog)
    for style in catalog:
        print(f"  {style.name:<{width}}  {style.summary()}")
    return 0


def gpus(settings: Settings) -> int:
    from fluxbot.app.device_report import format_device_table, gpu_report
    from fluxbot.devices.discovery import discover_devices

    print(format_device_table(gpu_report(settings, discover_devices())))
    return 0


def check_store_settings(settings: Settings) -> None:
    """The data dir and the database, as `run`, `db upgrade` and `export` need them."""
    check_store(settings.data_dir, settings.db_url, url_is_setting=bool(settings.database_url))


async def db_upgrade(settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from fluxbot.store import upgrade_database

    check_store_settings(settings)
    await upgrade_database(settings.db_url)
    shown = make_url(settings.db_url).render_as_string(hide_password=True)
    print(f"database is up to date: {shown}")
    return 0


async def export(settings: Settings, user_id: int, out: Path) -> int:
    from sqlalchemy.engine import make_url

    from fluxbot.app.export import UnknownUser, export_user
    from fluxbot.store import Store

    check_output_file(out)
    check_store_settings(settings)
    path = sqlite_path(make_url(settings.db_url))
    if path is not None and not path.is_file():
        raise PreflightError(
            f"there is no database at {path} (FLUXBOT_DATA_DIR={str(settings.data_dir)!r}), so "
            "nothing to export: run the export where the bot keeps its data"
        )
    store = await Store.open(settings)
    try:
        report = await export_user(store, user_id, out)
    except UnknownUser as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(report.summary(user_id))
    return 0


def web_preflight(settings: Settings) -> str | None:
    """Why the studio cannot start (missing extra, open host without login), or None."""
    from fluxbot.web import missing_extra

    problem = missing_extra()
    if problem is None:
        from fluxbot.config import ConfigError
        from fluxbot.web.access import check_web_settings

        try:
            check_web_settings(settings)
        except ConfigError as exc:
            problem = str(exc)
    return problem


def run_web(settings: Settings) -> int:
    """`fluxbot web`: the studio alone, on the same store and engine as the bot would use."""
    problem = web_preflight(settings)
    if problem:
        print(f"fluxbot: error: {problem}", file=sys.stderr)
        return 2
    check_store_settings(settings)
    if settings.backend is Backend.LOCAL:
        check_model(settings.model)
    from fluxbot.web.server import run

    return run(settings)


def run_bot(settings: Settings) -> int:
    """`fluxbot run`: the token, the data dir, the database and the model are checked before
    anything loads or Discord is contacted."""
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        print(f"fluxbot: error: {TOKEN_HELP}", file=sys.stderr)
        return 2
    if settings.web_port is not None and (problem := web_preflight(settings)):
        print(f"fluxbot: error: {problem}", file=sys.stderr)
        return 2
    check_store_settings(settings)
    from fluxbot.app.styles import load_styles

    load_styles(settings)  # a bad styles file stops the start here (exit 2), before Discord
    if settings.backend is Backend.LOCAL:  # Ray workers load the model on their own hosts
        check_model(settings.model)
        from fluxbot.devices.discovery import discover_devices, select_devices

        select_devices(settings.gpus, discover_devices())  # a wrong FLUXBOT_GPUS fails here
    from fluxbot.bot.login import DiscordUnreachable, TokenRejected, check_login

    token = settings.discord_token.get_secret_value()
    try:  # before the engine is imported and built: a network problem is said in seconds
        asyncio.run(check_login(settings.discord_api_base, token, settings.login_timeout_s))
    except (DiscordUnreachable, TokenRejected) as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return 1
    from fluxbot.bot.client import run

    if settings.web_port is None:
        return run(settings)
    from functools import partial

    from fluxbot.web.server import WebServer

    return run(settings, partial(WebServer, settings))  # the studio beside the bot


def health(settings: Settings, max_age_s: float) -> int:
    """`fluxbot health`: 0 when the running bot's heartbeat is fresh and it is connected,
    else 1 (a container healthcheck must use only these two; Docker reserves 2)."""
    from fluxbot.app.health import read_heartbeat

    verdict = read_heartbeat(settings.data_dir, max_age_s)
    print(verdict.line)
    return 0 if verdict.healthy else 1


def invite(settings: Settings, client_id: int | None) -> int:
    """`fluxbot invite`: the OAuth2 URL that adds the bot to a server with what it needs."""
    from fluxbot.bot.permissions import application_id_from_token, describe_permissions, invite_url

    if client_id is None:
        token = settings.discord_token.get_secret_value() if settings.discord_token else ""
        client_id = application_id_from_token(token)
        if client_id is None:
            raise PreflightError(
                "fluxbot invite needs the application id: set DISCORD_TOKEN (the id is read from "
                "it) or pass --client-id (Developer Portal > your application > General "
                "Information > Application ID)"
            )
    print(invite_url(client_id))
    print(f"permissions: {describe_permissions()}; no privileged intent is needed.")
    from fluxbot.web.urls import studio_url

    print(
        f"web studio login: add {studio_url(settings).redirect_uri} as a redirect URI "
        "(Developer Portal > OAuth2)"
    )
    return 0
