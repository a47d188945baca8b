"""The scheduler's own record of each job it holds: which worker runs it, how often it went back
to the queue, and how it ends on a shutdown. Callers never see it (they hold a `JobHandle`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from fluxbot.core.requests import JobStatus
from fluxbot.serving.handle import JobHandle
from fluxbot.serving.job import Job
from fluxbot.serving.workers.base import Worker


@dataclass(slots=True, eq=False)  # compared by identity: one per submitted job
class DispatchRecord:
    """One job from submit to finish, as the scheduler tracks it beside the caller's handle."""

    handle: JobHandle
    worker: Worker | None = None  # the worker running it, while it runs
    dispatched_at: float | None = None  # epoch seconds it left the queue (for its timings)
    requeues: int = 0  # times a lost batch put it back in the queue
    handed_back: bool = False  # a shutdown stops it: it ends QUEUED, to run after a restart
    finishing: bool = False  # generated; its images are being encoded: it can no longer stop

    @property
    def job(self) -> Job:
        return self.handle.job

    @property
    def job_id(self) -> str:
        return self.handle.job_id

    @property
    def on_device(self) -> bool:
        """Running on a device now (not yet encoding, not finished)."""
        return (
            self.handle.status is JobStatus.RUNNING and not self.finishing and not self.handle.done
        )

    def dispatched(self, worker: Worker, now: float) -> None:
        """It left the queue for `worker`."""
        self.worker = worker
        self.dispatched_at = now
        self.handle.started_on(worker.device)

    def requeued(self) -> Job:
        """Its worker lost it before running it: it waits again, ahead of the round-robin."""
        self.requeues += 1
        self.worker = None
        job = replace(self.handle.job, priority_front=True)
        self.handle.back_in_queue(job)
        return job
