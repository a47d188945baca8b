"""Logging: stdlib logging to stderr and a rotating file in the data dir, token redacted."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from fluxbot.core.requests import GenerationResult

MIN_SECRET_CHARS = 8
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Discord bot tokens: three dot-separated base64url parts.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")


# Loggers whose INFO lines say nothing an owner needs (alembic lists its plugins on every run).
QUIET_LOGGERS = ("alembic.runtime.plugins",)
HUB_LOGGER = "huggingface_hub"
_DIGITS = re.compile(r"\d+")


class DemoteRepeats(logging.Filter):
    """A hub warning already shown once is shown again only at DEBUG level. Numbers are left
    out of the comparison, so "Retrying in 2s [Retry 2/5]" repeats "Retrying in 1s [Retry 1/5]"."""

    def __init__(self, prefix: str, level: int) -> None:
        super().__init__()
        self._prefix = prefix
        self._level = level
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix) or record.levelno < logging.WARNING:
            return True
        shape = _DIGITS.sub("#", record.getMessage())
        if shape not in self._seen:
            self._seen.add(shape)
            return True
        if self._level > logging.DEBUG:
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class RedactSecrets(logging.Filter):
    """Replace the bot token (given, or anything shaped like one) in every record."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        # A very short "secret" (a placeholder such as DISCORD_TOKEN=x) would be replaced
        # inside every word; real tokens are about 70 characters.
        self._secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[token]")
        return TOKEN_PATTERN.sub("[token]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


def setup_logging(level: str, data_dir: Path | None, secrets: tuple[str, ...] = ()) -> None:
    """Configure the root logger once: stderr plus `data_dir/logs/fluxbot.log` (rotating)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    redact = RedactSecrets(secrets)
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if data_dir is not None:
        log_dir = data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_dir / "fluxbot.log", maxBytes=10 * 2**20, backupCount=5, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redact)
        handler.addFilter(DemoteRepeats(HUB_LOGGER, logging.getLevelName(level)))
        root.addHandler(handler)
    for noisy in ("discord.gateway", "discord.http", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(max(logging.getLevelName(level), logging.WARNING))
    _route_hub_logs_through_root()


def _route_hub_logs_through_root() -> None:
    """huggingface_hub adds its own stderr handler and also propagates, so each of its warnings
    was printed twice (once without a timestamp, never in the log file): keep only ours."""
    import huggingface_hub.utils.logging  # noqa: F401  (adds its handler on import)

    hub = logging.getLogger(HUB_LOGGER)
    for handler in list(hub.handlers):
        hub.removeHandler(handler)
    hub.propagate = True


def job_line(job_id: str, result: GenerationResult) -> str:
    """The one line logged per finished job: its stage timings and device."""
    t = result.timings
    return (
        f"job {job_id} done on {result.device}: {len(result.images) or len(result.seeds)} image(s) "
        f"{result.request.width}x{result.request.height} steps={result.request.steps} | "
        f"queued {t.queued:.2f}s text {t.text_encode:.3f}s denoise {t.denoise:.3f}s "
        f"decode {t.decode:.3f}s encode {t.image_encode:.3f}s total {t.total:.2f}s "
        f"path {result.path}"
    )
