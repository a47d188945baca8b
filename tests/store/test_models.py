"""Models and the engine's SQLite settings, checked on a real file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.store import Image, JobRow, SeedUse, Store, User

from .helpers import make_request


async def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(store: Store) -> None:
    async with store.db.read() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() >= 5000


async def test_datetimes_come_back_tz_aware_in_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2025, 3, 1, 12, 0, tzinfo=plus_two)
    job = await store.jobs.create(7, make_request(), now=created)
    loaded = await store.jobs.get(job.id)
    assert loaded is not None
    assert loaded.created_at.tzinfo is UTC
    assert loaded.created_at == created
    assert loaded.created_at.hour == 10


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await store.jobs.create(7, make_request(), now=datetime(2025, 1, 1))


async def test_enums_and_json_round_trip(store: Store) -> None:
    request = make_request(negative="blurry", count=3, seed=5)
    job = await store.jobs.create(7, request, kind=JobKind.VARIATION)
    loaded = await store.jobs.get(job.id)
    assert loaded is not None
    assert loaded.kind is JobKind.VARIATION
    assert loaded.status is JobStatus.QUEUED
    assert loaded.request == request


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        async with store.db.write() as session:
            session.add(
                Image(
                    job_id=999,
                    index=0,
                    seed=1,
                    path="images/x.png",
                    sha256="0" * 64,
                    width=1,
                    height=1,
                    format="png",
                    size_bytes=1,
                )
            )


async def test_deleting_a_job_cascades_to_images_and_detaches_seed_history(store: Store) -> None:
    parent = await store.jobs.create(7, make_request())
    child = await store.jobs.create(7, make_request(), kind=JobKind.REROLL, parent_id=parent.id)
    async with store.db.write() as session:
        session.add(
            Image(
                job_id=parent.id,
                index=0,
                seed=1,
                path="images/p.png",
                sha256="0" * 64,
                width=1,
                height=1,
                format="png",
                size_bytes=1,
            )
        )
    async with store.db.write() as session:
        await session.delete(await session.get(JobRow, parent.id))
    async with store.db.read() as session:
        assert (await session.scalars(select(Image))).all() == []
        seeds = (await session.scalars(select(SeedUse).order_by(SeedUse.id))).all()
        assert [seed.job_id for seed in seeds] == [None, child.id]
        reroll = await session.get(JobRow, child.id)
        assert reroll is not None and reroll.parent_id is None
        assert await session.get(User, 7) is not None
