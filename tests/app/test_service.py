"""JobService: the store and the scheduler in step (real SQLite file, real tiny pipeline)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fluxbot.app.service import JobService
from fluxbot.config import RecoverPolicy
from fluxbot.core.requests import GenerationRequest, JobStatus
from fluxbot.engine.encoding import encode_result, read_parameters
from fluxbot.serving.job import JobOutcome
from fluxbot.serving.scheduler import QueueFull, Scheduler
from fluxbot.serving.workers.local import LocalWorker
from fluxbot.store import Store
from fluxbot.store.models import JobRow
from tests.fakes_runner import FakeRunner, until


def _request(seed: int = 1, **fields: object) -> GenerationRequest:
    values: dict[str, object] = {"prompt": "a fox", "seed": seed, "width": 256, "height": 256}
    values.update(fields)
    return GenerationRequest(**values)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.finished: list[tuple[JobRow, JobOutcome]] = []

    async def __call__(self, row: JobRow, outcome: JobOutcome) -> None:
        self.finished.append((row, outcome))


async def _service(store: Store, runner_factory, cap: int = 5) -> JobService:  # type: ignore[no-untyped-def]
    worker = LocalWorker(
        "cpu", runner_factory, encode=lambda result: encode_result(result, "tiny-random")
    )
    scheduler = Scheduler([worker], user_queue_cap=cap)
    return JobService(store, scheduler)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    yield opened
    await opened.close()


async def test_a_finished_job_is_durable_before_anyone_hears_of_it(
    store: Store, tiny_runner
) -> None:  # type: ignore[no-untyped-def]
    service = await _service(store, lambda: tiny_runner)
    recorder = Recorder()
    service.on_finished(recorder)
    await service.start(RecoverPolicy.REQUEUE)
    submission = await service.submit(42, _request(seed=5, count=2))
    assert (await store.jobs.get(submission.row.id)).status == JobStatus.QUEUED
    await until(lambda: bool(recorder.finished), within_s=60)
    row, outcome = recorder.finished[0]
    assert outcome.status is JobStatus.DONE and row.status == JobStatus.DONE
    assert [image.seed for image in row.images] == [5, 6]
    for image in row.images:
        data = store.image_path(image.path).read_bytes()
        assert read_parameters(data)["seed"] == image.seed
    assert row.device == "cpu" and row.timings["denoise"] > 0
    await service.shutdown()


async def test_over_the_cap_nothing_is_written(store: Store) -> None:
    gate = threading.Semaphore(0)
    service = await _service(store, lambda: FakeRunner(permits=gate), cap=1)
    await service.start(RecoverPolicy.REQUEUE)
    service.scheduler.pause()
    await service.submit(7, _request())
    with pytest.raises(QueueFull, match="limit is 1"):
        await service.submit(7, _request(seed=2))
    assert (await store.jobs.for_user(7)).total == 1
    await service.shutdown(grace_s=0.1)


async def test_cancel_and_shutdown_keep_the_store_right(store: Store) -> None:
    gate = threading.Semaphore(0)
    service = await _service(store, lambda: FakeRunner(permits=gate))
    recorder = Recorder()
    service.on_finished(recorder)
    await service.start(RecoverPolicy.REQUEUE)
    service.scheduler.pause()
    first = await service.submit(1, _request())
    second = await service.submit(1, _request(seed=2))
    assert await service.cancel(first.row.public_id)
    await until(lambda: bool(recorder.finished))
    assert (await store.jobs.get(first.row.id)).status == JobStatus.CANCELLED
    assert await service.shutdown(grace_s=0.1) == 1  # handed back, to run at the next start
    assert (await store.jobs.get(second.row.id)).status == JobStatus.QUEUED


async def test_jobs_left_by_a_crash_run_at_the_next_start(store: Store, tiny_runner) -> None:  # type: ignore[no-untyped-def]
    row = await store.jobs.create(3, _request(seed=9))
    await store.jobs.mark_running(row.id, "cpu")  # the process died here
    service = await _service(store, lambda: tiny_runner)
    recorder = Recorder()
    service.on_finished(recorder)
    assert (await service.start(RecoverPolicy.REQUEUE)).failed == []
    await until(lambda: bool(recorder.finished), within_s=60)
    done, outcome = recorder.finished[0]
    assert done.id == row.id and outcome.status is JobStatus.DONE and done.images
    await service.shutdown()


async def test_forget_user_cancels_their_jobs_and_deletes_them_after_they_end(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Semaphore(0)
    service = await _service(store, lambda: FakeRunner(permits=gate))
    recorder = Recorder()
    service.on_finished(recorder)
    await service.start(RecoverPolicy.REQUEUE)
    running = await service.submit(1, _request())
    await until(lambda: service.handle(running.row.public_id).status is JobStatus.RUNNING)
    service.scheduler.pause()
    await service.submit(1, _request(seed=2))
    other = await service.submit(2, _request(seed=3))
    removal = await service.forget_user(1)
    assert removal.jobs == 2
    assert (await store.jobs.for_user(1)).total == 0
    assert (await store.jobs.get(other.row.id)).status == JobStatus.QUEUED
    # The running job ended (cancelled) before its row went: nothing was written after.
    assert {outcome.status for _, outcome in recorder.finished} == {JobStatus.CANCELLED}
    assert "could not store" not in caplog.text
    await service.shutdown(grace_s=0.1)


async def test_start_returns_the_requeued_jobs_to_follow(store: Store) -> None:
    row = await store.jobs.create(3, _request(seed=9))
    service = await _service(store, lambda: FakeRunner(permits=threading.Semaphore(0)))
    recovery = await service.start(RecoverPolicy.REQUEUE)
    assert [r.id for r in recovery.queued] == [row.id] and recovery.failed == []
    assert service.handle(row.public_id) is not None
    await service.shutdown(grace_s=0.1)
