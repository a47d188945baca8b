"""Alembic environment: async engine, batch mode for SQLite, the models' naming convention.

`fluxbot.store.migrate` hands in an open connection through `config.attributes`; the plain
`alembic -c migrations/alembic.ini ...` command makes its own engine from the URL (or from
fluxbot's settings when the URL is not set).
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from fluxbot.store.db import create_engine, write_engine
from fluxbot.store.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from fluxbot.config import load_settings

    return load_settings().db_url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        # fluxbot's engine emits BEGIN itself, so SQLite DDL is transactional: all or nothing.
        transactional_ddl=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    # Foreign keys off: a batch table rebuild must not cascade-delete child rows.
    engine = create_engine(_url(), foreign_keys=False)
    try:
        async with write_engine(engine).connect() as connection:
            await connection.run_sync(_run_on)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
