"""UsageRepo: per-server cooldowns and daily quotas, and the numbers behind `/server stats`.

A job is counted when it is queued (`claim`, which also enforces the limits in the same write
transaction, so a burst of commands cannot slip past a quota) and its images and GPU seconds
when it finishes (`record_finish`). Days are UTC days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.core.errors import UserError
from fluxbot.store.db import Database
from fluxbot.store.errors import StoreError
from fluxbot.store.models import Usage
from fluxbot.store.types import utcnow

NO_GUILD = 0


def day_of(when: datetime) -> str:
    return when.astimezone(UTC).date().isoformat()


def next_midnight(when: datetime) -> datetime:
    """When the UTC day of `when` ends (quotas reset then)."""
    today = when.astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)


def _stamp(when: datetime) -> int:
    return int(when.timestamp())


class LimitReached(UserError, StoreError):
    """A server's cooldown or daily quota refuses a job; `str()` is meant for the user."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class CooldownActive(LimitReached):
    def __init__(self, until: datetime) -> None:
        super().__init__(
            f"This server has a cooldown between images: try again <t:{_stamp(until)}:R>.", until
        )


class QuotaReached(LimitReached):
    def __init__(self, quota: int, until: datetime) -> None:
        super().__init__(
            f"You have made your {quota} image job(s) for today in this server; "
            f"the quota resets <t:{_stamp(until)}:R>.",
            until,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """One job counted by `claim`; `release` undoes it if the job could not be queued."""

    guild_id: int
    user_id: int
    day: str
    previous_last_job_at: datetime | None
    # Jobs left today after this one (None: no quota), and when the quota resets.
    remaining: int | None
    resets_at: datetime

    def quota_note(self) -> str | None:
        if self.remaining is None:
            return None
        return f"You can make {self.remaining} more today; resets <t:{_stamp(self.resets_at)}:R>."


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Totals for one user (`day` None) or one day (`user_id` None) in one server."""

    guild_id: int
    user_id: int | None
    day: str | None
    jobs: int
    images: int
    gpu_seconds: float


@dataclass(frozen=True, slots=True)
class UsageReport:
    since: str
    per_user: list[UsageLine]
    per_day: list[UsageLine]


async def _row(session: AsyncSession, guild_id: int, user_id: int, day: str) -> Usage:
    row = await session.get(Usage, (guild_id, user_id, day))
    if row is None:
        row = Usage(guild_id=guild_id, user_id=user_id, day=day, jobs=0, images=0, gpu_seconds=0.0)
        session.add(row)
    return row


class UsageRepo:
    """Reads and changes `usage` rows; `guild_id` None (DMs, CLI) is stored as 0."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self,
        guild_id: int | None,
        user_id: int,
        *,
        cooldown_s: int = 0,
        daily_quota: int = 0,
        now: datetime | None = None,
    ) -> Claim:
        """Count one job for the user, or raise `CooldownActive` / `QuotaReached` (then nothing
        is counted)."""
        now = now or utcnow()
        guild = NO_GUILD if guild_id is None else guild_id
        day = day_of(now)
        async with self._db.write() as session:
            last = await session.scalar(
                select(func.max(Usage.last_job_at)).where(
                    Usage.guild_id == guild, Usage.user_id == user_id
                )
            )
            if isinstance(last, str):  # func.max bypasses the column type on SQLite
                last = datetime.fromisoformat(last)
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=UTC)
            if cooldown_s and last is not None and now < last + timedelta(seconds=cooldown_s):
                raise CooldownActive(last + timedelta(seconds=cooldown_s))
            row = await _row(session, guild, user_id, day)
            if daily_quota and row.jobs >= daily_quota:
                raise QuotaReached(daily_quota, next_midnight(now))
            previous = row.last_job_at
            row.jobs += 1
            row.last_job_at = now
            remaining = daily_quota - row.jobs if daily_quota else None
        return Claim(guild, user_id, day, previous, remaining, next_midnight(now))

    async def release(self, claim: Claim) -> None:
        """Undo a claim whose job was never queued."""
        async with self._db.write() as session:
            row = await session.get(Usage, (claim.guild_id, claim.user_id, claim.day))
            if row is not None and row.jobs > 0:
                row.jobs -= 1
                row.last_job_at = claim.previous_last_job_at

    async def record_finish(
        self,
        guild_id: int | None,
        user_id: int,
        *,
        images: int,
        gpu_seconds: float,
        when: datetime | None = None,
    ) -> None:
        """Add a finished job's images and GPU seconds to its day."""
        guild = NO_GUILD if guild_id is None else guild_id
        async with self._db.write() as session:
            row = await _row(session, guild, user_id, day_of(when or utcnow()))
            row.images += images
            row.gpu_seconds += gpu_seconds

    async def report(
        self, guild_id: int | None, *, days: int = 7, now: datetime | None = None
    ) -> UsageReport:
        """Totals per user and per day over the last `days` days, for one server or (None) all."""
        since = day_of((now or utcnow()) - timedelta(days=max(1, days) - 1))
        totals = (
            func.sum(Usage.jobs),
            func.sum(Usage.images),
            func.sum(Usage.gpu_seconds),
        )
        where = [Usage.day >= since]
        if guild_id is not None:
            where.append(Usage.guild_id == guild_id)
        by_user = (
            select(Usage.guild_id, Usage.user_id, *totals)
            .where(*where)
            .group_by(Usage.guild_id, Usage.user_id)
            .order_by(func.sum(Usage.gpu_seconds).desc(), Usage.user_id)
        )
        by_day = (
            select(Usage.guild_id, Usage.day, *totals)
            .where(*where)
            .group_by(Usage.guild_id, Usage.day)
            .order_by(Usage.day.desc(), Usage.guild_id)
        )
        async with self._db.read() as session:
            users = [
                UsageLine(g, u, None, int(j or 0), int(i or 0), float(s or 0.0))
                for g, u, j, i, s in await session.execute(by_user)
            ]
            per_day = [
                UsageLine(g, None, d, int(j or 0), int(i or 0), float(s or 0.0))
                for g, d, j, i, s in await session.execute(by_day)
            ]
        return UsageReport(since, users, per_day)
