"""JobRepo: creation, state changes and the lookups that history, /show and reactions use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.store import JobNotFound, Origin, Store
from fluxbot.store.ids import ALPHABET, PUBLIC_ID_LENGTH

from .helpers import make_request

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def test_a_created_job_is_committed_before_create_returns(store: Store, db_url: str) -> None:
    job = await store.jobs.create(11, make_request(), origin=Origin(guild_id=1, channel_id=2))
    # A second, independent engine on the same file (another process, in effect) sees it.
    other = await Store.open(db_url, store.data_dir, migrate=False)
    try:
        seen = await other.jobs.get(job.id)
    finally:
        await other.close()
    assert seen is not None
    assert seen.status is JobStatus.QUEUED
    assert (seen.guild_id, seen.channel_id) == (1, 2)


async def test_public_ids_are_short_unique_and_forgiving(store: Store) -> None:
    jobs = [await store.jobs.create(11, make_request(seed=i)) for i in range(20)]
    ids = {job.public_id for job in jobs}
    assert len(ids) == 20
    assert all(len(i) == PUBLIC_ID_LENGTH and set(i) <= set(ALPHABET) for i in ids)
    job = jobs[3]
    typed = job.public_id.upper().replace("0", "O").replace("1", "l")
    found = await store.jobs.by_public_id(f" {typed} ")
    assert found is not None and found.id == job.id
    assert await store.jobs.by_public_id("nope") is None
    assert await store.jobs.by_public_id("uuuuuuuu") is None  # 'u' is not in the alphabet


async def test_interaction_token_expiry_defaults_to_fifteen_minutes(store: Store) -> None:
    job = await store.jobs.create(11, make_request(), origin=Origin(interaction_id=9), now=T0)
    assert job.token_expires_at == T0 + timedelta(minutes=15)
    assert job.token_alive(T0 + timedelta(minutes=5))
    assert not job.token_alive(T0 + timedelta(minutes=15))
    cli = await store.jobs.create(11, make_request())
    assert cli.token_expires_at is None and not cli.token_alive()


async def test_job_found_by_result_or_status_message(store: Store) -> None:
    job = await store.jobs.create(11, make_request())
    other = await store.jobs.create(11, make_request())
    await store.jobs.set_messages(job.id, status_message_id=500)
    await store.jobs.set_messages(job.id, result_message_id=501)
    await store.jobs.set_messages(other.id, result_message_id=600)
    assert (await store.jobs.by_message_id(501)).id == job.id  # type: ignore[union-attr]
    assert (await store.jobs.by_message_id(500)).id == job.id  # type: ignore[union-attr]
    assert (await store.jobs.by_message_id(600)).id == other.id  # type: ignore[union-attr]
    assert await store.jobs.by_message_id(777) is None


async def test_history_is_newest_first_and_paginated(store: Store) -> None:
    for i in range(7):
        await store.jobs.create(11, make_request(f"prompt {i}"), now=T0 + timedelta(minutes=i))
    await store.jobs.create(12, make_request("someone else's"), now=T0 + timedelta(hours=1))
    first = await store.jobs.for_user(11, page=0, per_page=3)
    assert [job.prompt for job in first.jobs] == ["prompt 6", "prompt 5", "prompt 4"]
    assert (first.total, first.pages, first.has_next, first.has_previous) == (7, 3, True, False)
    last = await store.jobs.for_user(11, page=2, per_page=3)
    assert [job.prompt for job in last.jobs] == ["prompt 0"]
    assert not last.has_next and last.has_previous
    empty = await store.jobs.for_user(99)
    assert empty.jobs == [] and empty.total == 0 and empty.pages == 1


async def test_queue_lists_active_jobs_oldest_first_and_counts_per_user(store: Store) -> None:
    a1 = await store.jobs.create(1, make_request(), now=T0 + timedelta(seconds=3))
    b1 = await store.jobs.create(2, make_request(), now=T0 + timedelta(seconds=1))
    a2 = await store.jobs.create(1, make_request(), now=T0 + timedelta(seconds=2))
    done = await store.jobs.create(2, make_request(), now=T0)
    await store.jobs.mark_running(done.id, "cpu")
    await store.jobs.mark_done(done.id)
    await store.jobs.mark_running(a2.id, "cuda:0")
    assert [job.id for job in await store.jobs.queue()] == [b1.id, a2.id, a1.id]
    assert await store.jobs.waiting_counts() == {1: 2, 2: 1}
    assert await store.jobs.waiting_count(1) == 2
    assert await store.jobs.waiting_count(3) == 0


async def test_state_changes_follow_the_lifecycle(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    running = await store.jobs.mark_running(job.id, "cuda:1", now=T0)
    assert running is not None
    assert (running.status, running.device, running.started_at, running.attempts) == (
        JobStatus.RUNNING,
        "cuda:1",
        T0,
        1,
    )
    assert await store.jobs.mark_running(job.id, "cuda:0") is None  # already claimed
    done = await store.jobs.mark_done(
        job.id, timings={"denoise": 1.5}, now=T0 + timedelta(seconds=2)
    )
    assert done.status is JobStatus.DONE and done.timings == {"denoise": 1.5}
    assert done.finished_at == T0 + timedelta(seconds=2)
    # A finished job stays finished.
    assert (await store.jobs.cancel(job.id)).status is JobStatus.DONE
    assert (await store.jobs.mark_failed(job.id, "late")).status is JobStatus.DONE


async def test_a_cancelled_job_is_not_revived_by_its_worker(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    await store.jobs.mark_running(job.id, "cpu")
    assert (await store.jobs.cancel(job.id)).status is JobStatus.CANCELLED
    assert (await store.jobs.mark_done(job.id)).status is JobStatus.CANCELLED
    queued = await store.jobs.create(1, make_request())
    await store.jobs.cancel(queued.id)
    assert await store.jobs.mark_running(queued.id, "cpu") is None


async def test_failures_keep_their_error_and_requeue_resets_the_attempt(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    await store.jobs.mark_running(job.id, "cuda:0")
    back = await store.jobs.requeue(job.id)
    assert back is not None and back.status is JobStatus.QUEUED and back.device is None
    assert await store.jobs.requeue(job.id) is None  # only running jobs go back
    await store.jobs.mark_running(job.id, "cuda:0")
    failed = await store.jobs.mark_failed(job.id, "CUDA out of memory")
    assert failed.status is JobStatus.FAILED and failed.error == "CUDA out of memory"
    assert failed.attempts == 2


async def test_rerolls_point_at_their_parent(store: Store) -> None:
    parent = await store.jobs.create(1, make_request())
    reroll = await store.jobs.create(1, make_request(), kind=JobKind.REROLL, parent_id=parent.id)
    assert reroll.parent_id == parent.id and reroll.kind is JobKind.REROLL
    assert [job.id for job in await store.jobs.children(parent.id)] == [reroll.id]


async def test_memory_database_works_for_quick_scripts(tmp_path: Path) -> None:
    store = await Store.open("sqlite+aiosqlite:///:memory:", tmp_path)
    try:
        job = await store.jobs.create(1, make_request())
        assert (await store.jobs.get(job.id)) is not None
    finally:
        await store.close()


async def test_changing_a_missing_job_says_so(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.jobs.mark_done(12345)
    with pytest.raises(JobNotFound):
        await store.jobs.set_messages(12345, result_message_id=1)
    with pytest.raises(JobNotFound):
        await store.jobs.require(12345)
    assert await store.jobs.mark_running(12345, "cpu") is None
