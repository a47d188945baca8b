"""Fixtures for the store tests: a migrated store on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fluxbot.store import Store

from .helpers import sqlite_url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db_url(data_dir: Path) -> str:
    return sqlite_url(data_dir / "fluxbot.db")


@pytest.fixture
async def store(db_url: str, data_dir: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_url, data_dir)
    try:
        yield opened
    finally:
        await opened.close()
