"""Deleting a user's data removes every row and file of theirs and nothing of anyone else's."""

from __future__ import annotations

from sqlalchemy import func, select

from fluxbot.core.requests import JobKind
from fluxbot.store import Image, JobRow, SeedUse, Store, User

from .helpers import encoded, make_request


async def _count(store: Store, model: type, user_id: int | None = None) -> int:
    query = select(func.count()).select_from(model)
    if user_id is not None:
        query = query.where(model.user_id == user_id)  # type: ignore[attr-defined]
    async with store.db.read() as session:
        return await session.scalar(query) or 0


async def test_delete_user_removes_rows_and_files(store: Store) -> None:
    await store.users.update_settings(1, seed_profile="fixed:9")
    mine = await store.jobs.create(1, make_request(seed=1, count=2))
    await store.finish_job(mine, [encoded(1), encoded(2)])
    waiting = await store.jobs.create(1, make_request(seed=3))
    theirs = await store.jobs.create(2, make_request(seed=4))
    theirs = await store.finish_job(theirs, [encoded(4)])
    # Someone else's reroll of one of my images keeps existing, just without the link.
    reroll = await store.jobs.create(
        2, make_request(seed=1), kind=JobKind.REROLL, parent_id=mine.id
    )

    removal = await store.delete_user(1)

    assert (removal.jobs, removal.images, removal.user_deleted) == (2, 2, True)
    assert removal.active_job_ids == (waiting.id,)
    assert await store.users.get(1) is None
    assert await _count(store, JobRow, 1) == 0
    assert await _count(store, SeedUse, 1) == 0
    assert await _count(store, Image) == 1
    assert store.files.list_files() == [theirs.images[0].path]
    assert await store.users.get(2) is not None
    kept = await store.jobs.get(reroll.id)
    assert kept is not None and kept.parent_id is None
    assert await _count(store, User) == 1


async def test_deleting_an_unknown_user_is_harmless(store: Store) -> None:
    removal = await store.delete_user(404)
    assert (removal.jobs, removal.user_deleted) == (0, False)


async def test_delete_jobs_removes_just_those(store: Store) -> None:
    a = await store.finish_job(await store.jobs.create(1, make_request(seed=1)), [encoded(1)])
    b = await store.finish_job(await store.jobs.create(1, make_request(seed=2)), [encoded(2)])
    removal = await store.delete_jobs([a.id])
    assert (removal.jobs, removal.images) == (1, 1)
    assert await store.jobs.get(a.id) is None and await store.jobs.get(b.id) is not None
    assert store.files.list_files() == [b.images[0].path]
