"""Retention: prune finished jobs (rows and files) by age and/or total image size, oldest first.

Queued and running jobs are never pruned, whatever their age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.store.db import Database
from fluxbot.store.files import ImageFiles
from fluxbot.store.models import ACTIVE_STATUSES, FINISHED_STATUSES, Image, JobRow, SeedUse
from fluxbot.store.removal import (
    Removal,
    delete_job_rows,
    delete_unused_sources,
    remove_files,
)
from fluxbot.store.types import utcnow

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How much history to keep; 0 turns a limit off."""

    days: int = 0
    max_bytes: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> RetentionPolicy:
        """From `retention_days` and `retention_max_gb`."""
        return cls(
            days=int(settings.retention_days),
            max_bytes=int(float(settings.retention_max_gb) * GIB),
        )

    @property
    def enabled(self) -> bool:
        return self.days > 0 or self.max_bytes > 0


async def prune(
    db: Database,
    files: ImageFiles,
    policy: RetentionPolicy,
    *,
    sources: ImageFiles | None = None,
    now: datetime | None = None,
) -> Removal:
    """Delete finished jobs older than `policy.days`, then the oldest finished jobs with images
    until the images total at most `policy.max_bytes`; with them the source images (in
    `sources`) no job left uses. Seed history ages out with `days` too."""
    if not policy.enabled:
        return Removal()
    now = now or utcnow()
    finished = JobRow.status.in_(FINISHED_STATUSES)
    doomed: list[int] = []
    async with db.write() as session:
        if policy.days > 0:
            cutoff = now - timedelta(days=policy.days)
            old = select(JobRow.id).where(finished, JobRow.created_at < cutoff)
            doomed.extend(await session.scalars(old.order_by(JobRow.created_at, JobRow.id)))
            active = select(JobRow.id).where(JobRow.status.in_(ACTIVE_STATUSES))
            await session.execute(
                delete(SeedUse).where(
                    SeedUse.used_at < cutoff,
                    or_(SeedUse.job_id.is_(None), SeedUse.job_id.not_in(active)),
                )
            )
        if policy.max_bytes > 0:
            doomed.extend(await _over_budget(session, policy.max_bytes, set(doomed)))
        source_paths: list[str] = []
        source_size = 0
        if sources is not None:
            source_paths, source_size = await delete_unused_sources(session, doomed, now=now)
        paths, size = await delete_job_rows(session, doomed)
    await remove_files(files, paths, sources, source_paths)
    return Removal(
        jobs=len(doomed),
        images=len(paths) + len(source_paths),
        bytes_freed=size + source_size,
    )


async def _over_budget(session: AsyncSession, max_bytes: int, already: set[int]) -> list[int]:
    """The oldest finished jobs whose images must go to bring the total under `max_bytes`."""
    per_job = (
        select(JobRow.id, JobRow.status, func.sum(Image.size_bytes))
        .join(Image, Image.job_id == JobRow.id)
        .group_by(JobRow.id)
        .order_by(JobRow.created_at, JobRow.id)
    )
    jobs = [row for row in await session.execute(per_job) if row[0] not in already]
    total = sum(size for _job_id, _status, size in jobs)
    chosen: list[int] = []
    for job_id, status, size in jobs:
        if total <= max_bytes:
            break
        if status in FINISHED_STATUSES:
            chosen.append(job_id)
            total -= size
    return chosen
