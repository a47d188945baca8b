"""Checks made at start, before any model loads or Discord is contacted.

Each failure is a `PreflightError` (a `ConfigError`: one line, exit code 2) that names the
setting, the value and what to do. Nothing here changes an existing file: a damaged database
is reported with its path and left exactly as it was.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError

from fluxbot.config import TINY_RANDOM, ConfigError

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
# The driver module a URL names -> the package that provides it.
DRIVER_PACKAGES = {
    "aiosqlite": "aiosqlite",
    "asyncpg": "asyncpg",
    "psycopg": "psycopg[binary]",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "oracledb": "oracledb",
    "aioodbc": "aioodbc",
}
URL_EXAMPLES = (
    "e.g. sqlite+aiosqlite:////srv/fluxbot/fluxbot.db or postgresql+asyncpg://USER:PASS@HOST/DB"
)


class PreflightError(ConfigError):
    """Something fluxbot needs at start is missing or unusable; the message says what to do."""


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode)).replace("0o", "0")


def _writable(path: Path) -> bool:
    """Writable by this process, and not marked read-only by its mode (which root ignores)."""
    return bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK)


def check_data_dir(data_dir: Path, setting: str = "FLUXBOT_DATA_DIR") -> None:
    """The data dir exists (created if missing), is a directory, and a file can be written in it."""
    shown = f"{setting}={str(data_dir)!r}"
    if data_dir.exists() and not data_dir.is_dir():
        raise PreflightError(f"{shown} is a file, not a directory: point {setting} at a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightError(
            f"{shown} cannot be created ({exc.strerror or exc}): create it yourself or choose "
            "another directory"
        ) from None
    problem = f"is not writable (mode {_mode(data_dir)})" if not _writable(data_dir) else ""
    if not problem:
        try:
            with tempfile.TemporaryFile(dir=data_dir):
                pass
        except OSError as exc:
            problem = f"is not writable ({exc.strerror or exc})"
    if problem:
        raise PreflightError(
            f"{shown} {problem}: make it writable for the user running fluxbot "
            f"(chmod u+rwx {data_dir}) or choose another directory"
        )


def check_database_url(url: str, setting: str = "FLUXBOT_DATABASE_URL") -> URL:
    """The URL parses, names a known async dialect, and its driver package is installed."""
    from sqlalchemy.ext.asyncio import create_async_engine

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise PreflightError(
            f"{setting}={url!r} is not a database URL: use an SQLAlchemy async URL, {URL_EXAMPLES}"
        ) from None
    shown = f"{setting}={parsed.render_as_string(hide_password=True)!r}"
    try:
        engine = create_async_engine(parsed)
    except NoSuchModuleError:
        raise PreflightError(
            f"{shown} names an unknown database or driver ({parsed.drivername}): {URL_EXAMPLES}"
        ) from None
    except ImportError as exc:
        module = (exc.name or parsed.get_driver_name()).split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise PreflightError(
            f"{shown} needs the driver {module!r}, which is not installed: pip install '{package}'"
        ) from None
    except InvalidRequestError:
        raise PreflightError(
            f"{shown} uses the driver {parsed.get_driver_name()!r}, which is not async: "
            f"{URL_EXAMPLES}"
        ) from None
    except (ArgumentError, TypeError, ValueError) as exc:
        raise PreflightError(f"{shown} is not usable: {exc}") from None
    engine.sync_engine.dispose()
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file of a file-backed SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def _aside_hint(path: Path) -> str:
    return (
        f"restore it from a backup, or move it aside (mv {path} {path}.broken) and fluxbot "
        "starts with an empty database; fluxbot did not change it"
    )


def check_sqlite_file(path: Path) -> None:
    """An existing database file is a readable, writable, intact SQLite database."""
    if not path.exists():
        if not path.parent.is_dir():
            check_data_dir(path.parent, setting="the database's directory")
        return
    if not path.is_file():
        raise PreflightError(f"the database {path} is not a file: move it away or fix the URL")
    if path.stat().st_size == 0:
        return  # SQLite treats an empty file as a new database
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise PreflightError(f"the database {path} cannot be read ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        raise PreflightError(f"the database {path} is not an SQLite database: {_aside_hint(path)}")
    if not _writable(path):
        raise PreflightError(
            f"the database {path} is read-only (mode {_mode(path)}): make it writable for the "
            f"user running fluxbot (chmod u+w {path})"
        )
    if not _writable(path.parent):
        raise PreflightError(
            f"the database's directory {path.parent} is not writable (mode {_mode(path.parent)}); "
            f"SQLite writes its journal beside the file: chmod u+rwx {path.parent}"
        )
    problem = _integrity_problem(path)
    if problem:
        raise PreflightError(f"the database {path} is damaged ({problem}): {_aside_hint(path)}")


def _integrity_problem(path: Path) -> str | None:
    """SQLite's own quick_check on a read-only connection; None when it says ok."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    except UnicodeDecodeError:
        # The report quotes names from damaged pages, garbage bytes included.
        return "SQLite's integrity check reports garbage where names should be"
    finally:
        connection.close()
    messages = [" ".join(str(row[0]).split()) for row in rows]
    if messages == ["ok"]:
        return None
    summary = "; ".join(messages[:2])
    return summary if len(summary) <= 160 else summary[:157] + "..."


def check_store(data_dir: Path, db_url: str, *, url_is_setting: bool) -> None:
    """The data dir and the database: checked before the store is opened or migrated."""
    check_data_dir(data_dir)
    url = check_database_url(db_url) if url_is_setting else make_url(db_url)
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path)


def check_model(model: str, setting: str = "FLUXBOT_MODEL") -> None:
    """A local diffusers directory exists; a hub id is cached when downloads are off.

    An uncached hub id with downloads allowed is fine: it is fetched at load, with progress.
    """
    if model == TINY_RANDOM:
        return
    shown = f"{setting}={model!r}"
    local = Path(model).expanduser()
    looks_local = model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1
    if local.exists() or looks_local:
        if not local.exists():
            raise PreflightError(
                f"{shown}: no such directory. Set it to a local diffusers model directory (one "
                "holding model_index.json), a Hugging Face hub id such as "
                "black-forest-labs/FLUX.1-schnell, or tiny-random"
            )
        if not (local / "model_index.json").is_file():
            raise PreflightError(
                f"{shown} is not a diffusers model directory (no model_index.json in it): point "
                "it at the folder that `hf download black-forest-labs/FLUX.1-schnell --local-dir "
                "DIR` fills"
            )
        return
    _check_hub_model(model, shown)


def _check_hub_model(model: str, shown: str) -> None:
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    try:
        cached = try_to_load_from_cache(model, "model_index.json")
    except HFValidationError:
        raise PreflightError(
            f"{shown} is neither a local directory nor a hub id (ORG/NAME), nor tiny-random"
        ) from None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise PreflightError(
            f"{shown} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set, so it cannot be downloaded: unset HF_HUB_OFFLINE to fetch it, "
            f"or run `hf download {model}` on a connected machine and copy the cache, or set "
            f"{shown.split('=')[0]} to a local directory"
        )
    log.info(
        "%s is not in the Hugging Face cache yet: it is downloaded on first load "
        "(FLUX.1-schnell is about 34 GB; progress bars follow)",
        model,
    )


def check_output_file(path: Path, what: str = "--out") -> None:
    """The file can be written: its directory exists (or can be made) and is writable."""
    shown = f"{what} {str(path)!r}"
    if path.is_dir():
        raise PreflightError(f"{shown} is a directory: give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise PreflightError(f"{shown}: {existing} is a file, not a directory")
    if not _writable(existing):
        raise PreflightError(f"{shown}: {existing} is not writable (mode {_mode(existing)})")
    if path.exists() and not _writable(path):
        raise PreflightError(f"{shown} exists and is read-only (mode {_mode(path)})")
