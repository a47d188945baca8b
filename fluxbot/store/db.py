"""Engine and session factory for the store, with the SQLite settings that keep writers calm.

Many jobs finish at once, so writers must queue instead of failing with "database is locked":
WAL lets readers run beside the one writer, `busy_timeout` makes a writer wait its turn, and
write transactions start with `BEGIN IMMEDIATE` so they take the write lock up front (a
deferred transaction that reads and then writes can fail at once, without waiting).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "fluxbot_write"
_SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_memory(url: str | URL) -> bool:
    """An in-memory SQLite database, which exists only inside one engine."""
    url = make_url(url)
    return is_sqlite(url) and url.database in (None, "", ":memory:")


def create_engine(
    url: str | URL, *, foreign_keys: bool = True, synchronous: str = "FULL", echo: bool = False
) -> AsyncEngine:
    """An async engine; on SQLite every new connection gets WAL, foreign keys and a busy timeout.

    `foreign_keys=False` is for migrations only: a batch table rebuild drops the old table,
    which with foreign keys on would cascade-delete every child row.
    """
    url = make_url(url)
    if synchronous.upper() not in _SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous={synchronous!r}: one of {', '.join(_SYNCHRONOUS_MODES)}")
    if not is_sqlite(url):
        return create_async_engine(url, echo=echo, pool_pre_ping=True)

    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    if is_memory(url):
        kwargs["poolclass"] = StaticPool
    else:
        # One connection per concurrent unit of work; writers still go one at a time.
        kwargs.update(pool_size=8, max_overflow=24, pool_timeout=60)
    engine = create_async_engine(url, echo=echo, **kwargs)
    _install_sqlite_hooks(engine, foreign_keys=foreign_keys, synchronous=synchronous)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, but its transactions take the write lock when they begin."""
    return engine.execution_options(**{_WRITE_OPTION: True})


class Database:
    """An engine plus two session factories: `read()` for queries, `write()` for changes.

    Each repository method is one short unit of work in its own session, so no transaction
    (and no write lock) is held across an `await` on Discord or the GPU.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reader = async_sessionmaker(engine, expire_on_commit=False)
        self.writer = async_sessionmaker(write_engine(engine), expire_on_commit=False)

    @classmethod
    def connect(cls, url: str | URL, **engine_kwargs: Any) -> Database:
        return cls(create_engine(url, **engine_kwargs))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; its transaction is rolled back at the end."""
        async with self.reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed on success, rolled back on error."""
        async with self.writer() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
