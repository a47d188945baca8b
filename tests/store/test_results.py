"""Saving images: files before rows, replacement on re-runs, and the same-seed hash check."""

from __future__ import annotations

import pytest

from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.store import JobNotFound, Store

from .helpers import encoded, make_request


async def _files_on_disk(store: Store) -> set[str]:
    return set(store.files.list_files())


async def test_finish_job_stores_files_rows_and_status_together(store: Store) -> None:
    job = await store.jobs.create(1, make_request(seed=10, count=2))
    await store.jobs.mark_running(job.id, "cuda:0")
    done = await store.finish_job(job, [encoded(10), encoded(11)], timings={"total": 2.0})
    assert done.status is JobStatus.DONE and done.timings == {"total": 2.0}
    assert [(image.index, image.seed) for image in done.images] == [(0, 10), (1, 11)]
    for image in done.images:
        path = store.image_path(image.path)
        assert path.read_bytes() == encoded(image.seed).data
        assert image.size_bytes == len(encoded(image.seed).data)
        assert image.sha256 == encoded(image.seed).sha256
    assert await _files_on_disk(store) == {image.path for image in done.images}
    assert await store.images.total_bytes() == sum(i.size_bytes for i in done.images)
    loaded = await store.jobs.get(job.id)
    assert loaded is not None and [i.path for i in loaded.images] == [i.path for i in done.images]


async def test_read_images_gives_back_what_was_stored_in_batch_order(store: Store) -> None:
    job = await store.jobs.create(1, make_request(seed=3, count=2))
    done = await store.finish_job(job, [encoded(3), encoded(4)])
    images = await store.read_images(done)
    assert [(image.seed, image.data) for image in images] == [
        (3, encoded(3).data),
        (4, encoded(4).data),
    ]


async def test_same_seed_reroll_matches_parent_hashes(store: Store) -> None:
    parent = await store.jobs.create(1, make_request(seed=7, count=2))
    await store.finish_job(parent, [encoded(7), encoded(8)])
    reroll = await store.jobs.create(
        1, make_request(seed=7, count=2), kind=JobKind.REROLL, parent_id=parent.id
    )
    await store.finish_job(reroll, [encoded(7), encoded(8)])
    different = await store.jobs.create(1, make_request(seed=9, count=2))
    await store.finish_job(different, [encoded(9), encoded(10)])
    parent_hashes = await store.images.hashes(parent.id)
    assert len(parent_hashes) == 2
    assert await store.images.hashes(reroll.id) == parent_hashes
    assert await store.images.hashes(different.id) != parent_hashes


async def test_a_rerun_replaces_the_earlier_images(store: Store) -> None:
    job = await store.jobs.create(1, make_request(seed=1, count=2))
    first = await store.save_images(job, [encoded(1), encoded(2)])
    again = await store.save_images(job, [encoded(1), encoded(2, payload=b"new bytes")])
    assert again.images[0].path == first.images[0].path  # identical bytes: same file kept
    assert again.images[1].path != first.images[1].path
    assert await _files_on_disk(store) == {image.path for image in again.images}
    assert store.image_path(again.images[0].path).exists()


async def test_images_of_a_job_cancelled_meanwhile_are_discarded(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    await store.jobs.mark_running(job.id, "cpu")
    await store.jobs.cancel(job.id)
    result = await store.finish_job(job, [encoded(1)])
    assert result.status is JobStatus.CANCELLED and result.images == []
    assert await _files_on_disk(store) == set()


async def test_saving_for_a_deleted_job_fails_and_leaves_no_file(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    await store.delete_user(1)
    with pytest.raises(JobNotFound):
        await store.finish_job(job, [encoded(1)])
    assert await _files_on_disk(store) == set()


async def test_a_failed_commit_removes_the_files_it_wrote(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await store.jobs.create(1, make_request(count=2))

    async def failing(*_args: object) -> list[str]:
        raise RuntimeError("database went away")

    monkeypatch.setattr("fluxbot.store.results._replace_rows", failing)
    with pytest.raises(RuntimeError, match="went away"):
        await store.finish_job(job, [encoded(1), encoded(2)])
    assert await _files_on_disk(store) == set()
    loaded = await store.jobs.get(job.id)
    assert loaded is not None and loaded.status is JobStatus.QUEUED and loaded.images == []
