"""UserRepo: a Discord user's preferences, ban flag and seed history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.core.requests import ASPECT_RATIOS, RequestError
from fluxbot.core.seeds import SeedProfile
from fluxbot.store.db import Database
from fluxbot.store.models import JobRow, SeedUse, User

MAX_DEFAULT_STEPS = 50


@dataclass(frozen=True, slots=True)
class SeedRecord:
    """A seed a user was given, when, and by which job (None once that job was pruned)."""

    seed: int
    used_at: datetime
    job_public_id: str | None


async def ensure_user(session: AsyncSession, user_id: int) -> User:
    """The user's row inside a write transaction, created with defaults if new."""
    user = await session.get(User, user_id)
    if user is None:
        user = User(id=user_id)
        session.add(user)
        await session.flush()
    return user


def check_preferences(
    *,
    seed_profile: str | None = None,
    default_aspect: str | None = None,
    default_steps: int | None = None,
    private_results: bool | None = None,
) -> None:
    """Raise `RequestError` for a preference that must not be stored (None: not changed)."""
    if seed_profile is not None:
        if not isinstance(seed_profile, str):
            raise RequestError("seed profile", seed_profile, "random, increment or fixed:N")
        SeedProfile.parse(seed_profile)
    if default_aspect is not None and default_aspect not in ASPECT_RATIOS:
        raise RequestError("aspect", default_aspect, f"one of {', '.join(ASPECT_RATIOS)}")
    if default_steps is not None and (
        isinstance(default_steps, bool)
        or not isinstance(default_steps, int)
        or not 1 <= default_steps <= MAX_DEFAULT_STEPS
    ):
        raise RequestError("steps", default_steps, f"a whole number from 1 to {MAX_DEFAULT_STEPS}")
    if private_results is not None and not isinstance(private_results, bool):
        raise RequestError("private", private_results, "true or false")


class UserRepo:
    """Reads and changes `users` and `seed_history` rows."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Each user's "private results" default, read on every /imagine before it is answered.
        self._private: dict[int, bool] = {}
        self._private_loaded = False

    async def load_private_defaults(self) -> None:
        """Cache every user's private-results default at once (those who turned it on; the
        rest are off), so answering a command needs no database read."""
        async with self._db.read() as session:
            on = set(await session.scalars(select(User.id).where(User.private_results)))
        self._private = dict.fromkeys(on, True) | {
            uid: value for uid, value in self._private.items() if uid not in on
        }
        self._private_loaded = True

    async def private_default(self, user_id: int) -> bool:
        """The user's private-results default (False for unknown users), cached."""
        cached = self._private.get(user_id)
        if cached is None and self._private_loaded:
            return False
        if cached is None:
            async with self._db.read() as session:
                value = await session.scalar(select(User.private_results).where(User.id == user_id))
            cached = self._private[user_id] = bool(value)
        return cached

    def forget_cached(self, user_id: int) -> None:
        """Drop what is cached about a user (their row was deleted)."""
        self._private.pop(user_id, None)

    async def get(self, user_id: int) -> User | None:
        async with self._db.read() as session:
            return await session.get(User, user_id)

    async def get_or_create(self, user_id: int) -> User:
        async with self._db.write() as session:
            return await ensure_user(session, user_id)

    async def update_settings(
        self,
        user_id: int,
        *,
        seed_profile: str | None = None,
        default_aspect: str | None = None,
        default_steps: int | None = None,
        private_results: bool | None = None,
    ) -> User:
        """Change the given preferences (None leaves one as it is); creates the user if new.

        Values are checked here, whatever the caller did: a bad one raises `RequestError` and
        nothing is stored, so no stored preference can break a later job.
        """
        check_preferences(
            seed_profile=seed_profile,
            default_aspect=default_aspect,
            default_steps=default_steps,
            private_results=private_results,
        )
        async with self._db.write() as session:
            user = await ensure_user(session, user_id)
            if seed_profile is not None:
                user.seed_profile = seed_profile
            if default_aspect is not None:
                user.default_aspect = default_aspect
            if default_steps is not None:
                user.default_steps = default_steps
            if private_results is not None:
                user.private_results = private_results
            self._private[user_id] = user.private_results
            return user

    async def claim_seed(self, user_id: int, pick: Callable[[User], int]) -> int:
        """Choose and record the user's next seed in one transaction.

        `pick` sees the user's row (profile, last seed) and returns the seed; two commands
        arriving together cannot both get the same 'increment' seed.
        """
        async with self._db.write() as session:
            user = await ensure_user(session, user_id)
            seed = pick(user)
            user.last_seed = seed
            return seed

    async def recent_seeds(self, user_id: int, limit: int = 10) -> list[SeedRecord]:
        """The user's seeds, newest first."""
        query = (
            select(SeedUse.seed, SeedUse.used_at, JobRow.public_id)
            .outerjoin(JobRow, JobRow.id == SeedUse.job_id)
            .where(SeedUse.user_id == user_id)
            .order_by(SeedUse.used_at.desc(), SeedUse.id.desc())
            .limit(limit)
        )
        async with self._db.read() as session:
            rows = await session.execute(query)
            return [SeedRecord(seed, used_at, public_id) for seed, used_at, public_id in rows]
