"""Run the Alembic migrations in `migrations/` from code: `fluxbot db upgrade` and `fluxbot run`.

No alembic.ini is needed: the config is built here and points at the migrations directory
next to the package (the repository checkout, or the installed `migrations` package).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxbot.store.db import create_engine, is_memory, is_sqlite, write_engine
from fluxbot.store.errors import MigrationError


def migrations_dir() -> Path:
    """The directory holding env.py and versions/ (found for editable and regular installs)."""
    beside_package = Path(__file__).resolve().parents[2] / "migrations"
    if (beside_package / "env.py").is_file():
        return beside_package
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").is_file():
                return Path(location)
    raise MigrationError("cannot find the migrations directory (migrations/env.py)")


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for the store's migrations, optionally bound to a database URL."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        rendered = make_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _ensure_parent_dir(url: URL) -> None:
    """SQLite creates a missing database file, but not the directory it goes in."""
    if is_sqlite(url) and not is_memory(url):
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)


async def _run(
    url: str | URL, action: str, revision: str, engine: AsyncEngine | None = None
) -> None:
    url = make_url(url)
    _ensure_parent_dir(url)
    config = alembic_config(url)
    # Foreign keys off: a batch table rebuild must not cascade-delete child rows. (An
    # in-memory database exists only in its own engine, so that one must be used as it is.)
    owned = engine is None
    engine = engine or create_engine(url, foreign_keys=False)

    def migrate(connection: Connection) -> None:
        config.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    try:
        async with write_engine(engine).begin() as connection:
            await connection.run_sync(migrate)
            if is_sqlite(url):
                broken = (await connection.execute(text("PRAGMA foreign_key_check"))).all()
                if broken:
                    raise MigrationError(f"{action} to {revision} broke foreign keys: {broken[:5]}")
    finally:
        if owned:
            await engine.dispose()


async def upgrade_database(
    url: str | URL, revision: str = "head", *, engine: AsyncEngine | None = None
) -> None:
    """Bring the database at `url` up to `revision` (creating it if new); safe to repeat.

    Pass `engine` only for an in-memory database, which lives inside one engine.
    """
    await _run(url, "upgrade", revision, engine)


async def downgrade_database(url: str | URL, revision: str = "base") -> None:
    """Take the database at `url` down to `revision` (for tests and rollbacks)."""
    await _run(url, "downgrade", revision)


async def current_revision(url: str | URL) -> str | None:
    """The revision the database is at, or None if it has never been migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
