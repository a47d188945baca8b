"""`JobHandle`: a caller's view of a job it submitted to the scheduler: its state, its place in
the queue, a stream of its events and its outcome. The scheduler moves it along; callers read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fluxbot.core.requests import JobStatus
from fluxbot.serving.events import (
    FinishedEvent,
    JobEvent,
    JobEventStream,
    PositionEvent,
    ProgressEvent,
    StartedEvent,
)
from fluxbot.serving.job import Job, JobOutcome


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """Where a waiting job stands: 1-based position, and seconds until it starts and finishes."""

    position: int
    starts_in_s: float
    eta_s: float
    device: str


class JobHandle:
    """The caller's view of a submitted job: state, place in the queue, events and outcome.

    `job`, `status`, `device`, `place` and `outcome` are for reading; only the scheduler changes
    them, through `publish`, `started_on`, `back_in_queue` and `moved_to`.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.status = JobStatus.QUEUED
        self.device: str | None = None
        self.place: QueuePlace | None = None
        self.outcome: JobOutcome | None = None
        self._future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self._streams: list[JobEventStream] = []
        # The latest event of each kind, so a new subscriber starts from the job's state.
        self._position: PositionEvent | None = None
        self._started: StartedEvent | None = None
        self._progress: ProgressEvent | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def last_position(self) -> PositionEvent | None:
        """The position the job was last told, if it ever waited."""
        return self._position

    def events(self, *, coalesce: bool = True, min_interval_s: float = 0.0) -> JobEventStream:
        """A new subscription, starting from the job's current state and ending with its finish."""
        stream = JobEventStream(coalesce=coalesce, min_interval_s=min_interval_s)
        if self.outcome is not None:
            stream.push(FinishedEvent(self.job_id, self.outcome))
            return stream
        if self._started is not None:
            stream.push(self._started)
            if self._progress is not None:
                stream.push(self._progress)
        elif self._position is not None:
            stream.push(self._position)
        self._streams.append(stream)
        return stream

    async def result(self) -> JobOutcome:
        """Wait for the outcome (cancelling this wait does not cancel the job)."""
        return await asyncio.shield(self._future)

    # -- the scheduler's side -------------------------------------------------------------------

    def moved_to(self, place: QueuePlace) -> QueuePlace | None:
        """The job's new place in the queue; returns the one it had."""
        old, self.place = self.place, place
        return old

    def started_on(self, device: str) -> None:
        """The job left the queue for `device`."""
        self.status = JobStatus.RUNNING
        self.device = device
        self.place = None

    def back_in_queue(self, job: Job) -> None:
        """The job waits again (its device was lost before running it), as `job`."""
        self.job = job
        self.status = JobStatus.QUEUED
        self.device = None
        self._started = self._progress = None

    def publish(self, event: JobEvent) -> None:
        """Record an event and pass it to every subscriber; a finish ends the job."""
        if self.outcome is not None:
            return
        if isinstance(event, PositionEvent):
            self._position = event
        elif isinstance(event, StartedEvent):
            self._started, self._progress = event, None
        elif isinstance(event, ProgressEvent):
            self._progress = event
        elif isinstance(event, FinishedEvent):
            self.outcome = event.outcome
            self.status = event.outcome.status
            self._future.set_result(event.outcome)
        for stream in self._streams:
            stream.push(event)
        if self.outcome is not None:
            self._streams.clear()
