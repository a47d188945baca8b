"""The `fluxbot` command: run | web | generate | animate | vary | upscale | zoom | pan |
styles | gpus | db upgrade | export | invite | health."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fluxbot import __version__
from fluxbot.app.styles import StylesError
from fluxbot.cli.commands import ModelUnavailable
from fluxbot.config import ConfigError, Settings, load_settings, misspelled_settings
from fluxbot.core.errors import UserError
from fluxbot.core.requests import ASPECT_PRESETS, SEED_MAX

EXIT_USAGE = 2
log = logging.getLogger("fluxbot")


class CliError(UserError):
    """A problem the user can fix: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise CliError(message)


def _int_arg(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise CliError(f"--{name} {text!r} is not a whole number") from None

    return parse


def _float_arg(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise CliError(f"--{name} {text!r} is not a number") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fluxbot", description="FLUX.1-schnell images for Discord.")
    parser.add_argument("--version", action="version", version=f"fluxbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("run", help="run the Discord bot (applies migrations first)")
    sub.add_parser("web", help="serve the web studio alone (needs the fluxbot[web] extra)")

    def add_generation_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("prompt", help="what to draw (inline flags such as --ar 16:9 work too)")
        p.add_argument("--model", help="hub id, local diffusers directory or tiny-random")
        p.add_argument("--seed", type=_int_arg("seed"), help=f"0..{SEED_MAX}; random if unset")
        p.add_argument("--aspect", choices=list(ASPECT_PRESETS), help="aspect preset")
        p.add_argument("--width", type=_int_arg("width"), help="multiple of 16")
        p.add_argument("--height", type=_int_arg("height"), help="multiple of 16")
        p.add_argument("--steps", type=_int_arg("steps"), help="denoising steps (schnell: 4)")
        p.add_argument("--negative", default=None, help="negative prompt (doubles compute)")
        p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 or cpu")
        p.add_argument("--style", default=None, help="a style of the styles file (fluxbot styles)")

    gen = sub.add_parser("generate", help="generate image(s) to files")
    add_generation_options(gen)
    gen.add_argument("--count", type=_int_arg("count"), default=None, help="1..4 images")
    gen.add_argument(
        "--out",
        type=Path,
        default=Path("fluxbot.png"),
        help="output file: .png, .jpg or .webp (parameters kept in the file's metadata)",
    )
    gen.add_argument("--image", type=Path, default=None, help="start from this PNG/JPEG/WebP")
    gen.add_argument(
        "--strength", type=_float_arg("strength"), default=None, help="0.05..1.0 (with --image)"
    )

    def add_edit(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("source", metavar="JOB_ID|FILE", help="a stored job's id or an image file")
        p.add_argument("--index", type=_int_arg("index"), default=1, help="which image (1..4)")
        p.add_argument("--prompt", default=None, help="prompt for a file without parameters")
        p.add_argument("--seed", type=_int_arg("seed"), help=f"0..{SEED_MAX}")
        p.add_argument("--model", help="hub id, local diffusers directory or tiny-random")
        p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 or cpu")
        p.add_argument("--out", type=Path, default=Path(f"fluxbot-{name}.png"))
        return p

    vary = add_edit("vary", "a variation of an image (img2img, new seed)")
    vary.add_argument("--strength", type=_float_arg("strength"), default=None, help="0.05..1.0")
    vary.add_argument("--strong", action="store_true", help="strength 0.7 instead of 0.35")
    upscale = add_edit("upscale", "twice the side, refined in tiles")
    upscale.add_argument("--strength", type=_float_arg("strength"), default=None)
    zoom = add_edit("zoom", "zoom out: the image shrinks and a new border is drawn")
    zoom.add_argument("--factor", type=float, choices=[1.5, 2.0], default=2.0)
    pan = add_edit("pan", "extend the image to one side")
    pan.add_argument("--direction", choices=["left", "right", "up", "down"], required=True)

    anim = sub.add_parser("animate", help="a GIF morphing between two seeds")
    add_generation_options(anim)
    anim.add_argument("--frames", type=_int_arg("frames"), default=12, help="2..24 frames")
    anim.add_argument("--seed-to", type=_int_arg("seed-to"), default=None, help="end seed")
    anim.add_argument("--prompt-to", default=None, help="morph towards this prompt")
    anim.add_argument("--fps", type=_float_arg("fps"), default=8.0, help="frames a second")
    anim.add_argument("--max-bytes", type=_int_arg("max-bytes"), default=10 * 2**20)
    anim.add_argument("--out", type=Path, default=Path("fluxbot.gif"))

    sub.add_parser("styles", help="check the styles file and list its styles")

    sub.add_parser("gpus", help="list devices, memory and the memory profile each would use")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    db_sub.add_parser("upgrade", help="apply migrations (creates the database)")

    export = sub.add_parser("export", help="export one user's images and parameters as a zip")
    export.add_argument("--user", type=_int_arg("user"), required=True, help="Discord user id")
    export.add_argument("--out", type=Path, required=True, help="zip file to write")

    invite = sub.add_parser("invite", help="print the URL that adds the bot to a server")
    invite.add_argument(
        "--client-id", type=_int_arg("client-id"), default=None, help="application id"
    )

    health = sub.add_parser("health", help="exit 0 if the running bot is healthy (healthcheck)")
    health.add_argument(
        "--max-age",
        type=_float_arg("max-age"),
        default=None,
        help="seconds after which the heartbeat counts as stale",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = args.model
    return load_settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        settings = _settings(args)
        from fluxbot.logs import setup_logging

        token = settings.discord_token.get_secret_value() if settings.discord_token else ""
        log_dir = settings.data_dir if args.command in ("run", "web") else None
        if log_dir is not None:
            from fluxbot.app.preflight import check_data_dir

            check_data_dir(log_dir)  # before the log file goes in it
        setup_logging(settings.log_level, log_dir, (token,))
        for warning in misspelled_settings():
            log.warning("%s", warning)
        return _dispatch(args, settings)
    except ModelUnavailable as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, UserError, StylesError) as exc:
        print(f"fluxbot: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from fluxbot.cli import commands as cli_commands

    match args.command:
        case "generate":
            return cli_commands.generate(args, settings)
        case "animate":
            return cli_commands.animate(args, settings)
        case "styles":
            return cli_commands.styles(settings)
        case "vary" | "upscale" | "zoom" | "pan":
            from fluxbot.cli.edits import edit

            return edit(args, settings)
        case "gpus":
            return cli_commands.gpus(settings)
        case "db":
            if args.db_command != "upgrade":
                raise CliError("db needs an action: upgrade")
            return asyncio.run(cli_commands.db_upgrade(settings))
        case "export":
            return asyncio.run(cli_commands.export(settings, args.user, args.out))
        case "run":
            return cli_commands.run_bot(settings)
        case "invite":
            return cli_commands.invite(settings, args.client_id)
        case "health":
            from fluxbot.app.health import DEFAULT_MAX_AGE_S

            return cli_commands.health(settings, args.max_age or DEFAULT_MAX_AGE_S)
        case "web":
            return cli_commands.run_web(settings)
    raise CliError(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
