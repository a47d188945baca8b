"""Crash recovery: jobs a dead process left queued or running are requeued or failed, never lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from fluxbot.config import RecoverPolicy
from fluxbot.core.requests import JobStatus
from fluxbot.store.db import Database
from fluxbot.store.models import ACTIVE_STATUSES, JobRow
from fluxbot.store.types import utcnow

DEFAULT_MAX_ATTEMPTS = 3
INTERRUPTED = "fluxbot restarted while this job was {status}, and the recovery policy is 'fail'"
GAVE_UP = "fluxbot stopped while running this job {attempts} times; it will not be retried"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What start-up recovery did; `queued` goes to the scheduler, `failed` gets a notice."""

    queued: list[JobRow] = field(default_factory=list)
    failed: list[JobRow] = field(default_factory=list)

    @property
    def jobs(self) -> list[JobRow]:
        return [*self.queued, *self.failed]


async def recover_interrupted(
    db: Database,
    policy: RecoverPolicy,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    now: datetime | None = None,
) -> Recovery:
    """Settle every queued or running job left by the last process (call once, before workers).

    REQUEUE puts running jobs back in the queue, unless one has already been started
    `max_attempts` times (it may be what kills the process), in which case it fails. FAIL
    fails every active job with a notice in its `error`. Oldest first in both lists.
    """
    now = now or utcnow()
    recovery = Recovery()
    async with db.write() as session:
        query = (
            select(JobRow)
            .where(JobRow.status.in_(ACTIVE_STATUSES))
            .order_by(JobRow.created_at, JobRow.id)
        )
        for job in await session.scalars(query):
            if policy is RecoverPolicy.FAIL:
                _fail(job, INTERRUPTED.format(status=job.status.value), now)
                recovery.failed.append(job)
            elif job.status is JobStatus.RUNNING and job.attempts >= max_attempts:
                _fail(job, GAVE_UP.format(attempts=job.attempts), now)
                recovery.failed.append(job)
            else:
                job.status = JobStatus.QUEUED
                job.device = None
                job.started_at = None
                recovery.queued.append(job)
    return recovery


def _fail(job: JobRow, error: str, now: datetime) -> None:
    job.status = JobStatus.FAILED
    job.error = error
    job.finished_at = now
