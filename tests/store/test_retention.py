"""Retention: old or excess finished jobs go (rows and files), oldest first; active jobs stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from fluxbot.core.edits import ImageEdit, Operation
from fluxbot.core.requests import JobStatus
from fluxbot.store import JobRow, RetentionPolicy, Store

from .helpers import encoded, make_request

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


async def _job(store: Store, age: timedelta, status: JobStatus, size: int = 1000) -> JobRow:
    job = await store.jobs.create(1, make_request(seed=int(age.total_seconds())), now=NOW - age)
    if status is JobStatus.QUEUED:
        return job
    await store.jobs.mark_running(job.id, "cuda:0")
    if status is JobStatus.RUNNING:
        # A running job can already have images (an animation's frames, say).
        return await store.save_images(job, [encoded(job.seed, size=size)])
    if status is JobStatus.FAILED:
        return await store.jobs.mark_failed(job.id, "boom")
    return await store.finish_job(job, [encoded(job.seed, size=size)])


async def _ids(store: Store) -> set[int]:
    return {job.id for job in (await store.jobs.for_user(1, per_page=100)).jobs}


def test_policy_from_settings() -> None:
    settings = SimpleNamespace(retention_days=30, retention_max_gb=1.5)
    policy = RetentionPolicy.from_settings(settings)
    assert policy == RetentionPolicy(days=30, max_bytes=int(1.5 * 1024**3))
    assert not RetentionPolicy().enabled


async def test_nothing_is_pruned_when_retention_is_off(store: Store) -> None:
    await _job(store, timedelta(days=900), JobStatus.DONE)
    assert (await store.prune(RetentionPolicy(), now=NOW)).jobs == 0
    assert len(await _ids(store)) == 1


async def test_old_finished_jobs_go_with_their_files(store: Store) -> None:
    old_done = await _job(store, timedelta(days=10), JobStatus.DONE)
    old_failed = await _job(store, timedelta(days=9), JobStatus.FAILED)
    old_queued = await _job(store, timedelta(days=10), JobStatus.QUEUED)
    old_running = await _job(store, timedelta(days=10), JobStatus.RUNNING)
    recent = await _job(store, timedelta(days=1), JobStatus.DONE)
    removal = await store.prune(RetentionPolicy(days=7), now=NOW)
    assert (removal.jobs, removal.images, removal.bytes_freed) == (2, 1, 1000)
    assert await _ids(store) == {old_queued.id, old_running.id, recent.id}
    assert not store.image_path(old_done.images[0].path).exists()
    assert store.files.list_files() == sorted([old_running.images[0].path, recent.images[0].path])
    assert old_failed.id not in await _ids(store)
    seeds = await store.users.recent_seeds(1, limit=100)
    assert len(seeds) == 3  # seed history older than the cut-off went too


async def test_size_cap_prunes_oldest_finished_first(store: Store) -> None:
    running = await _job(store, timedelta(hours=10), JobStatus.RUNNING)
    j1 = await _job(store, timedelta(hours=4), JobStatus.DONE)
    j2 = await _job(store, timedelta(hours=3), JobStatus.DONE)
    j3 = await _job(store, timedelta(hours=2), JobStatus.DONE)
    j4 = await _job(store, timedelta(hours=1), JobStatus.DONE)
    assert await store.images.total_bytes() == 5000
    removal = await store.prune(RetentionPolicy(max_bytes=2500), now=NOW)
    assert (removal.jobs, removal.bytes_freed) == (3, 3000)
    assert await _ids(store) == {running.id, j4.id}
    assert await store.images.total_bytes() == 2000
    assert len(store.files.list_files()) == 2
    assert j1.id not in await _ids(store) and j2.id not in await _ids(store)
    assert j3.id not in await _ids(store)
    # Already under the cap: nothing more goes.
    assert (await store.prune(RetentionPolicy(max_bytes=2500), now=NOW)).jobs == 0


async def test_active_jobs_survive_even_over_the_cap(store: Store) -> None:
    running = await _job(store, timedelta(days=100), JobStatus.RUNNING, size=5000)
    removal = await store.prune(RetentionPolicy(days=1, max_bytes=10), now=NOW)
    assert removal.jobs == 0
    assert await _ids(store) == {running.id}
    assert store.image_path(running.images[0].path).exists()


async def _vary_job(store: Store, age: timedelta, sha: str) -> JobRow:
    edit = ImageEdit(Operation.VARY, source_sha256=sha, strength=0.5, parent="p")
    request = make_request(seed=int(age.total_seconds()) + 7, edit=edit)
    job = await store.jobs.create(1, request, now=NOW - age)
    await store.jobs.mark_running(job.id, "cuda:0")
    return await store.finish_job(job, [encoded(job.seed)])


async def test_a_source_image_goes_with_the_last_job_that_used_it(store: Store) -> None:
    # Regression: pruned jobs left their source images (uploads, parents' images) behind for
    # ever, rows and files, outside any size cap.
    async def source(sha: str, age: timedelta = timedelta(days=20)) -> str:
        row = await store.sources.save(1, sha, b"png bytes " + sha.encode(), "png", 8, 8)
        row.created_at = NOW - age
        async with store.db.write() as session:
            await session.merge(row)
        return row.path

    only_old, shared, just_stored = "a" * 64, "b" * 64, "c" * 64
    only_old_path, shared_path = await source(only_old), await source(shared)
    # Stored minutes ago (a new upload of the same picture whose job is on its way): it stays.
    await source(just_stored, timedelta(minutes=10))
    await _vary_job(store, timedelta(days=10), just_stored)
    await _vary_job(store, timedelta(days=10), only_old)
    await _vary_job(store, timedelta(days=10), shared)
    kept = await _vary_job(store, timedelta(days=1), shared)
    removal = await store.prune(RetentionPolicy(days=7), now=NOW)
    assert removal.jobs == 3
    assert [s.sha256 for s in await store.sources.for_user(1)] == [shared, just_stored]
    assert not store.sources.files.absolute(only_old_path).exists()
    assert store.sources.files.absolute(shared_path).exists()
    assert await store.sources.load(1, shared)  # the job still there can run again
    assert kept.id in await _ids(store)
