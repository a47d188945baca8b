"""DispatchRecord: the scheduler's state of one job as it is dispatched, requeued, encoded."""

from __future__ import annotations

from fluxbot.core.requests import JobStatus
from fluxbot.serving.dispatch import DispatchRecord
from fluxbot.serving.handle import JobHandle
from fluxbot.serving.workers.local import LocalWorker
from tests.fakes_runner import FakeMemory, FakeRunner, job


async def test_a_requeued_job_waits_again_ahead_of_the_round_robin_and_counts_the_requeue() -> None:
    runner = FakeRunner()
    worker = LocalWorker("cpu", lambda: runner, memory=FakeMemory([]))
    record = DispatchRecord(JobHandle(job("j1")))

    record.dispatched(worker, now=100.0)
    assert record.on_device and record.worker is worker and record.dispatched_at == 100.0
    assert (record.handle.status, record.handle.device) == (JobStatus.RUNNING, "cpu")

    again = record.requeued()
    assert again.priority_front and record.job is again and record.job_id == "j1"
    assert record.requeues == 1 and record.worker is None and not record.on_device
    assert record.handle.status is JobStatus.QUEUED

    record.dispatched(worker, now=101.0)
    record.finishing = True
    assert not record.on_device, "a job whose images are being encoded is off the device"
    await worker.close()
