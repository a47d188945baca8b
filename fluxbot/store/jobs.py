"""JobRepo: create jobs, move them through their states, and look them up for history and queue."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.core.requests import GenerationRequest, JobKind, JobStatus
from fluxbot.store.db import Database
from fluxbot.store.errors import JobNotFound
from fluxbot.store.ids import new_public_id, normalize_public_id
from fluxbot.store.models import ACTIVE_STATUSES, FLAGGED, Image, JobRow, SeedUse
from fluxbot.store.types import utcnow
from fluxbot.store.users import ensure_user

INTERACTION_TOKEN_TTL = timedelta(minutes=15)
MAX_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from in Discord; all empty for the CLI."""

    guild_id: int | None = None
    channel_id: int | None = None
    interaction_id: int | None = None
    application_id: int | None = None
    # Defaults to 15 minutes after the job is created when there is an interaction.
    token_expires_at: datetime | None = None
    # Shown to its owner only (and its rerolls too); made in an age-restricted channel.
    private: bool = False
    age_restricted: bool = False


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a user's history, newest first; `page` counts from 0."""

    jobs: list[JobRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 0


async def _unused_public_id(session: AsyncSession) -> str:
    # Inside a write transaction nobody else can take the id between the check and the insert.
    while True:
        candidate = new_public_id()
        taken = await session.scalar(select(JobRow.id).where(JobRow.public_id == candidate))
        if taken is None:
            return candidate


class JobRepo:
    """Reads and changes `jobs` rows; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        user_id: int,
        request: GenerationRequest,
        *,
        kind: JobKind = JobKind.IMAGINE,
        origin: Origin | None = None,
        parent_id: int | None = None,
        private: bool = False,
        now: datetime | None = None,
    ) -> JobRow:
        """Store a new queued job and the seed it uses; it is committed when this returns.

        Call it before telling the user the job is queued, so a crash cannot lose a job
        the user was promised. A job made from an image records its operation and source
        (from `request.edit`); store the source first (`Store.sources.save`).
        """
        edit = request.edit
        origin = origin or Origin()
        now = now or utcnow()
        expires = origin.token_expires_at
        if expires is None and origin.interaction_id is not None:
            expires = now + INTERACTION_TOKEN_TTL
        async with self._db.write() as session:
            user = await ensure_user(session, user_id)
            job = JobRow(
                public_id=await _unused_public_id(session),
                user_id=user_id,
                guild_id=origin.guild_id,
                channel_id=origin.channel_id,
                interaction_id=origin.interaction_id,
                application_id=origin.application_id,
                token_expires_at=expires,
                kind=kind,
                parent_id=parent_id,
                operation=None if edit is None else str(edit.operation),
                source_sha256=None if edit is None else edit.source_sha256,
                private=private or origin.private,
                age_restricted=origin.age_restricted,
                prompt=request.prompt,
                negative=request.negative,
                params=request.to_params(),
                seed=request.seed,
                status=JobStatus.QUEUED,
                attempts=0,
                created_at=now,
                images=[],
            )
            session.add(job)
            await session.flush()
            session.add(SeedUse(user_id=user_id, seed=request.seed, job_id=job.id, used_at=now))
            user.last_seed = request.seeds[-1]
            return job

    async def get(self, job_id: int) -> JobRow | None:
        async with self._db.read() as session:
            return await session.get(JobRow, job_id)

    async def require(self, job_id: int) -> JobRow:
        """Like `get`, but a missing job raises `JobNotFound`."""
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def by_public_id(self, public_id: str) -> JobRow | None:
        """The job a user named in `/show` (typing slips such as case or 'O' for '0' forgiven)."""
        canonical = normalize_public_id(public_id)
        if canonical is None:
            return None
        async with self._db.read() as session:
            return await session.scalar(select(JobRow).where(JobRow.public_id == canonical))

    async def by_message_id(self, message_id: int) -> JobRow | None:
        """The job whose result (or status) message this is: how reactions find their job."""
        query = (
            select(JobRow)
            .where(
                or_(JobRow.result_message_id == message_id, JobRow.status_message_id == message_id)
            )
            .order_by(JobRow.id.desc())
            .limit(1)
        )
        async with self._db.read() as session:
            return await session.scalar(query)

    async def for_user(
        self,
        user_id: int,
        *,
        page: int = 0,
        per_page: int = 10,
        text: str | None = None,
        seed: int | None = None,
        guild_id: int | None = None,
    ) -> JobPage:
        """A user's jobs, newest first, one page at a time; optionally only those whose prompt
        contains `text` (case-insensitive) or that used `seed` (for any of their images); with
        `guild_id`, those made there."""
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        page = max(0, page)
        where = [JobRow.user_id == user_id]
        if text and text.strip():
            pattern = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%")
            pattern = pattern.replace("_", "\\_")
            where.append(func.lower(JobRow.prompt).like(f"%{pattern}%", escape="\\"))
        if seed is not None:
            used = select(Image.job_id).where(Image.seed == seed)
            where.append(or_(JobRow.seed == seed, JobRow.id.in_(used)))
        if guild_id is not None:
            where.append(JobRow.guild_id == guild_id)
        query = (
            select(JobRow)
            .where(*where)
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .offset(page * per_page)
            .limit(per_page)
        )
        async with self._db.read() as session:
            total = await session.scalar(select(func.count()).select_from(JobRow).where(*where))
            jobs = list(await session.scalars(query))
        return JobPage(jobs=jobs, total=total or 0, page=page, per_page=per_page)

    async def all_for_user(self, user_id: int) -> list[JobRow]:
        """Every job of a user, oldest first (for export)."""
        query = (
            select(JobRow).where(JobRow.user_id == user_id).order_by(JobRow.created_at, JobRow.id)
        )
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def children(self, job_id: int) -> list[JobRow]:
        """Jobs made from this one (rerolls, variations), oldest first."""
        query = (
            select(JobRow).where(JobRow.parent_id == job_id).order_by(JobRow.created_at, JobRow.id)
        )
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def queue(self, *, guild_id: int | None = None) -> list[JobRow]:
        """Queued and running jobs, oldest first (what the scheduler must still do);
        with `guild_id`, only those made in that server."""
        query = (
            select(JobRow)
            .where(JobRow.status.in_(ACTIVE_STATUSES))
            .order_by(JobRow.created_at, JobRow.id)
        )
        if guild_id is not None:
            query = query.where(JobRow.guild_id == guild_id)
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def flagged(self, *, guild_id: int | None = None, limit: int = 25) -> list[JobRow]:
        """Jobs with an image the safety classifier flagged, newest first (one server or all)."""
        flagged_ids = select(Image.job_id).where(Image.safety_verdict == FLAGGED)
        query = (
            select(JobRow)
            .where(JobRow.id.in_(flagged_ids))
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(max(1, min(limit, MAX_PER_PAGE)))
        )
        if guild_id is not None:
            query = query.where(JobRow.guild_id == guild_id)
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def undelivered(self) -> list[JobRow]:
        """Done jobs whose result was never posted, oldest first (retried at start)."""
        query = (
            select(JobRow)
            .where(JobRow.status == JobStatus.DONE, JobRow.delivered_at.is_(None))
            .order_by(JobRow.finished_at, JobRow.id)
        )
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def mark_delivered(self, job_id: int, *, now: datetime | None = None) -> None:
        """The result reached Discord: never post it again by itself."""
        async with self._db.write() as session:
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    delivered_at=now or utcnow(),
                    delivery_attempts=JobRow.delivery_attempts + 1,
                    delivery_error=None,
                )
            )

    async def mark_undelivered(self, job_id: int, error: str) -> None:
        """Posting failed (after retries): kept for the next start and for `/show`."""
        async with self._db.write() as session:
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(delivery_attempts=JobRow.delivery_attempts + 1, delivery_error=error[:500])
            )

    async def waiting_counts(self) -> dict[int, int]:
        """Queued plus running jobs per user id (users with none are left out)."""
        query = (
            select(JobRow.user_id, func.count())
            .where(JobRow.status.in_(ACTIVE_STATUSES))
            .group_by(JobRow.user_id)
        )
        async with self._db.read() as session:
            return {user_id: count for user_id, count in await session.execute(query)}

    async def waiting_count(self, user_id: int) -> int:
        query = select(func.count()).where(
            JobRow.user_id == user_id, JobRow.status.in_(ACTIVE_STATUSES)
        )
        async with self._db.read() as session:
            return await session.scalar(query) or 0

    async def mark_running(
        self, job_id: int, device: str, *, now: datetime | None = None
    ) -> JobRow | None:
        """Claim a queued job for a worker; None if it is no longer queued (cancelled, gone)."""
        claimed = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                device=device,
                started_at=now or utcnow(),
                attempts=JobRow.attempts + 1,
            )
        )
        async with self._db.write() as session:
            result = cast(CursorResult[Any], await session.execute(claimed))
            if result.rowcount == 0:
                return None
            return await session.get(JobRow, job_id, populate_existing=True)

    async def mark_done(
        self,
        job_id: int,
        *,
        timings: Mapping[str, float] | None = None,
        now: datetime | None = None,
    ) -> JobRow:
        """Finish an active job successfully (see `Store.finish_job` to add images with it)."""
        async with self._db.write() as session:
            return await finish(session, job_id, JobStatus.DONE, timings=timings, now=now)

    async def mark_failed(
        self,
        job_id: int,
        error: str,
        *,
        timings: Mapping[str, float] | None = None,
        now: datetime | None = None,
    ) -> JobRow:
        async with self._db.write() as session:
            return await finish(
                session, job_id, JobStatus.FAILED, error=error, timings=timings, now=now
            )

    async def cancel(self, job_id: int, *, now: datetime | None = None) -> JobRow:
        """Cancel a queued or running job; a finished job is returned unchanged."""
        async with self._db.write() as session:
            return await finish(session, job_id, JobStatus.CANCELLED, now=now)

    async def requeue(self, job_id: int) -> JobRow | None:
        """Put a running job back in the queue after an interrupted attempt; None if not running."""
        back = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == JobStatus.RUNNING)
            .values(status=JobStatus.QUEUED, device=None, started_at=None)
        )
        async with self._db.write() as session:
            result = cast(CursorResult[Any], await session.execute(back))
            if result.rowcount == 0:
                return None
            return await session.get(JobRow, job_id, populate_existing=True)

    async def set_messages(
        self,
        job_id: int,
        *,
        status_message_id: int | None = None,
        result_message_id: int | None = None,
    ) -> JobRow:
        """Remember the Discord messages showing this job (None leaves one as it is)."""
        async with self._db.write() as session:
            job = await session.get(JobRow, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if status_message_id is not None:
                job.status_message_id = status_message_id
            if result_message_id is not None:
                job.result_message_id = result_message_id
            return job


async def finish(
    session: AsyncSession,
    job_id: int,
    status: JobStatus,
    *,
    error: str | None = None,
    timings: Mapping[str, float] | None = None,
    now: datetime | None = None,
) -> JobRow:
    """Move an active job to a finished status inside the caller's write transaction.

    A job that is already finished keeps its status: a worker finishing after the user
    cancelled must not turn 'cancelled' back into 'done'.
    """
    job = await session.get(JobRow, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.active:
        job.status = status
        job.finished_at = now or utcnow()
        if error is not None:
            job.error = error
        if timings is not None:
            job.timings = dict(timings)
    return job
