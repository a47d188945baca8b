"""Settings: read once from the environment and `.env`, validated, then passed down.

Every setting is `FLUXBOT_<NAME>` except `DISCORD_TOKEN`. A wrong value raises `ConfigError`,
whose message is one line naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "black-forest-labs/FLUX.1-schnell"
TINY_RANDOM = "tiny-random"  # a tiny random-weight model built in code, for tests and trials
DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg"


class ConfigError(Exception):
    """A setting has a value fluxbot cannot use; the message is meant for the operator."""


class MemoryProfile(StrEnum):
    AUTO = "auto"
    FULL = "full"
    FP8 = "fp8"
    OFFLOAD = "offload"
    LOWVRAM = "lowvram"


class SpeedProfile(StrEnum):
    """How the transformer is run: plain eager, compiled bf16, or compiled fp8 (`fast`); `auto`
    picks the fastest the device supports (fluxbot.engine.speed.plan_speed)."""

    AUTO = "auto"
    EAGER = "eager"
    COMPILE = "compile"
    FAST = "fast"


class RecoverPolicy(StrEnum):
    REQUEUE = "requeue"
    FAIL = "fail"


class Backend(StrEnum):
    LOCAL = "local"
    RAY = "ray"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """fluxbot's settings; see `.env.example` for each one's meaning."""

    model_config = SettingsConfigDict(
        env_prefix="FLUXBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
    )

    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "discord_token")
    )
    model: str = DEFAULT_MODEL
    data_dir: Path = Path("./data")
    database_url: str | None = None
    gpus: str = "all"
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    discord_api_base: str = DISCORD_API_BASE
    discord_gateway_url: str = DISCORD_GATEWAY_URL
    dev_guild: int | None = None
    log_level: str = "INFO"

    memory_profile: MemoryProfile = MemoryProfile.AUTO
    speed_profile: SpeedProfile = SpeedProfile.AUTO
    backend: Backend = Backend.LOCAL
    ray_address: str = "auto"

    max_width: int = Field(default=2048, ge=64, le=4096)
    max_height: int = Field(default=2048, ge=64, le=4096)
    min_size: int = Field(default=256, ge=16, le=1024)
    max_megapixels: float = Field(default=2.0, gt=0.0, le=16.0)
    max_steps: int = Field(default=8, ge=1, le=50)
    # Upscale x2 refines in tiles of at most `upscale_tile` px; repeatable up to this side.
    upscale_max_side: int = Field(default=4096, ge=512, le=8192)
    upscale_tile: int = Field(default=1024, ge=256, le=2048, multiple_of=16)

    user_queue_cap: int = Field(default=5, ge=1, le=1000)
    global_queue_cap: int = Field(default=200, ge=1, le=100_000)
    job_timeout_s: float = Field(default=300.0, gt=0)
    # Off by default: pixels of a job batched with others can differ by rounding from a solo run.
    batch_small_jobs: bool = False

    memory_high: float = Field(default=0.85, gt=0, lt=1)
    memory_critical: float = Field(default=0.95, gt=0, le=1)

    blocklist: Annotated[tuple[str, ...], NoDecode] = ()
    allow_dms: bool = False
    # Classify every finished image with the offline NudeNet detector (see engine/safety.py).
    image_safety: bool = True
    safety_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    # Posting a result: attempts (with backoff) before it is left for the next start and /show.
    delivery_attempts: int = Field(default=5, ge=1, le=20)
    delivery_timeout_s: float = Field(default=30.0, gt=0)
    delivery_backoff_s: float = Field(default=1.0, gt=0, le=60)

    # The styles file (TOML); unset: styles.toml in the data dir, if it exists.
    styles: Path | None = None
    # LoRAs one replica keeps loaded; the least recently used is unloaded past this.
    max_loras: int = Field(default=4, ge=1, le=64)

    recover_jobs: RecoverPolicy = RecoverPolicy.REQUEUE
    retention_days: int = Field(default=0, ge=0)
    retention_max_gb: float = Field(default=0.0, ge=0)

    # One budget for reaching Discord at login: retries with backoff inside it.
    login_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # The web studio (fluxbot/web): local-only without OAuth; any other host needs Discord login.
    web_host: str = "127.0.0.1"
    web_port: int | None = Field(default=None, ge=1, le=65535)
    web_base_url: str | None = None
    web_session_hours: float = Field(default=168.0, gt=0, le=24 * 90)
    discord_client_id: int | None = Field(default=None, gt=0)
    discord_client_secret: SecretStr | None = None

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("blocklist", mode="before")
    @classmethod
    def _parse_blocklist(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("web_base_url")
    @classmethod
    def _check_web_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError("allowed: an http(s) URL such as https://studio.example.org/flux")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        allowed = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in allowed:
            raise ValueError(f"allowed: {', '.join(allowed)}")
        return value.upper()

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("all", "cpu"):
            return value
        parts = [p.strip() for p in value.split(",")]
        if not parts or not all(p.isdigit() for p in parts):
            raise ValueError("allowed: 'all', 'cpu' or comma-separated GPU indexes such as '0,2'")
        return ",".join(parts)

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the store: the setting, or a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'fluxbot.db').resolve()}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def styles_path(self) -> Path:
        """The styles file: FLUXBOT_STYLES, else styles.toml in the data dir."""
        return self.styles if self.styles is not None else self.data_dir / "styles.toml"

    @property
    def cache_dir(self) -> Path:
        """Compile caches and other rebuildable state."""
        return self.data_dir / "cache"


def _env_name(loc: tuple[Any, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    if field == "discord_token":
        return "DISCORD_TOKEN"
    return f"FLUXBOT_{field.upper()}"


def _describe(error: ErrorDetails) -> str:
    name = _env_name(error.get("loc", ()))
    value = error.get("input")
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if isinstance(value, dict):
        value = "(missing)"
    return f"{name}={value!r} is not valid: {message}"


def setting_names() -> frozenset[str]:
    """Every variable name fluxbot reads (`DISCORD_TOKEN` and `FLUXBOT_<FIELD>`)."""
    return frozenset(_env_name((name,)) for name in Settings.model_fields)


def misspelled_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> list[str]:
    """One warning per `FLUXBOT_*` name (environment or `.env`) that is not a setting.

    pydantic-settings ignores unknown names, so a typo such as FLUXBOT_MODLE would silently
    leave the default in force; the warning names the closest real setting.
    """
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    sources: dict[str, str] = {name: "the environment" for name in environ}
    if env_file is not None and env_file.is_file():
        for name in dotenv_values(env_file, encoding="utf-8"):
            sources.setdefault(name, str(env_file))
    known = setting_names()
    warnings = []
    for name, where in sorted(sources.items()):
        if not name.upper().startswith("FLUXBOT_") or name.upper() in known:
            continue
        # Compared without the shared prefix, which would make every name look close.
        suffixes = sorted(k.removeprefix("FLUXBOT_") for k in known if k.startswith("FLUXBOT_"))
        wrong = name.upper().removeprefix("FLUXBOT_")
        close = difflib.get_close_matches(wrong, suffixes, n=1, cutoff=0.6)
        hint = f"did you mean FLUXBOT_{close[0]}?" if close else "see .env.example for them all"
        warnings.append(f"{name} (in {where}) is not a fluxbot setting and is ignored; {hint}")
    return warnings


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings once; raise `ConfigError` with a one-line message."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None
    if settings.memory_high >= settings.memory_critical:
        raise ConfigError(
            f"FLUXBOT_MEMORY_HIGH={settings.memory_high} is not valid: "
            f"it must be below FLUXBOT_MEMORY_CRITICAL={settings.memory_critical}"
        )
    return settings
