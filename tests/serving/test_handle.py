"""JobHandle: subscribers start from the job's state; a requeue forgets the lost run."""

from __future__ import annotations

from dataclasses import replace

from fluxbot.core.requests import JobStatus
from fluxbot.serving.events import (
    FinishedEvent,
    JobEvent,
    JobEventStream,
    PositionEvent,
    ProgressEvent,
    StartedEvent,
)
from fluxbot.serving.handle import JobHandle, QueuePlace
from fluxbot.serving.job import JobOutcome
from tests.fakes_runner import job


async def kinds(stream: JobEventStream) -> list[type[JobEvent]]:
    return [type(event) async for event in stream]


async def test_a_new_subscriber_starts_from_the_jobs_state_and_a_requeue_forgets_the_run() -> None:
    handle = JobHandle(job("j1"))
    assert handle.moved_to(QueuePlace(2, 1.0, 5.0, "cpu")) is None
    handle.publish(PositionEvent("j1", 2, 5.0, 105.0))
    handle.started_on("cpu")
    assert (handle.status, handle.device, handle.place) == (JobStatus.RUNNING, "cpu", None)
    handle.publish(StartedEvent("j1", "cpu", 1))
    handle.publish(ProgressEvent("j1", 1, 4))
    running = handle.events(coalesce=False)

    handle.back_in_queue(replace(handle.job, priority_front=True))
    assert (handle.status, handle.device) == (JobStatus.QUEUED, None)
    assert handle.job.priority_front and handle.last_position is not None
    waiting = handle.events(coalesce=False)
    outcome = JobOutcome("j1", JobStatus.DONE)
    handle.publish(FinishedEvent("j1", outcome))
    handle.publish(ProgressEvent("j1", 2, 4))  # after the finish: ignored

    assert await kinds(running) == [StartedEvent, ProgressEvent, FinishedEvent]
    assert await kinds(waiting) == [PositionEvent, FinishedEvent]
    assert await handle.result() is outcome
    assert handle.done and handle.status is JobStatus.DONE
    assert await kinds(handle.events()) == [FinishedEvent]
