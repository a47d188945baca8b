"""Per-server policy: the validated `GuildPolicy` value and the repository that stores it.

Validation happens here, at the store's boundary, so whatever a command sends (a float for a
count, a string for a flag) can never be stored and break a later job. Reads are cached: every
`/imagine` needs its server's policy, and only `/server settings` changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import select

from fluxbot.core.requests import MAX_COUNT, RequestError
from fluxbot.store.db import Database
from fluxbot.store.models import GuildSettings
from fluxbot.store.types import utcnow

MAX_ALLOWED_CHANNELS = 25
MAX_COOLDOWN_S = 24 * 3600
MAX_DAILY_QUOTA = 10_000
MAX_STEPS_LIMIT = 50


class SafetyPolicy(StrEnum):
    """What happens to an image the safety classifier flags, outside age-restricted channels."""

    SPOILER = "spoiler"  # posted blurred (SPOILER_ file name), one click to see
    WITHHOLD = "withhold"  # not posted; its owner is told, and it stays in their history
    OFF = "off"  # posted as it is (still classified and recorded)


def _whole(name: str, value: Any, low: int, high: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        allowed = f"a whole number from {low} to {high}" + (", or none" if optional else "")
        raise RequestError(name, value, allowed)
    return value


def _snowflake(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**64:
        raise RequestError(name, value, "a Discord id (a positive whole number)")
    return value


@dataclass(frozen=True, slots=True)
class GuildPolicy:
    """One server's rules; the defaults limit nothing. Invalid values raise `RequestError`."""

    allowed_channel_ids: tuple[int, ...] = ()
    required_role_id: int | None = None
    cooldown_s: int = 0
    daily_quota: int = 0
    max_count: int | None = None
    max_steps: int | None = None
    private_default: bool = False
    safety_policy: SafetyPolicy = SafetyPolicy.SPOILER

    def __post_init__(self) -> None:
        channels = self.allowed_channel_ids
        if isinstance(channels, str | bytes) or not isinstance(channels, Iterable):
            raise RequestError("channels", channels, "a list of channel ids")
        channels = tuple(dict.fromkeys(_snowflake("channel", c) for c in channels))
        if len(channels) > MAX_ALLOWED_CHANNELS:
            raise RequestError(
                "channels", len(channels), f"at most {MAX_ALLOWED_CHANNELS} channels"
            )
        object.__setattr__(self, "allowed_channel_ids", channels)
        if self.required_role_id is not None:
            _snowflake("role", self.required_role_id)
        _whole("cooldown", self.cooldown_s, 0, MAX_COOLDOWN_S)
        _whole("daily quota", self.daily_quota, 0, MAX_DAILY_QUOTA)
        _whole("max count", self.max_count, 1, MAX_COUNT, optional=True)
        _whole("max steps", self.max_steps, 1, MAX_STEPS_LIMIT, optional=True)
        if not isinstance(self.private_default, bool):
            raise RequestError("private", self.private_default, "true or false")
        try:
            policy = SafetyPolicy(self.safety_policy)
        except ValueError:
            allowed = ", ".join(p.value for p in SafetyPolicy)
            raise RequestError("image safety", self.safety_policy, allowed) from None
        object.__setattr__(self, "safety_policy", policy)

    def allows_channel(self, channel_id: int | None) -> bool:
        return not self.allowed_channel_ids or channel_id in self.allowed_channel_ids

    def changed(self, **changes: Any) -> GuildPolicy:
        """A copy with `changes` applied (validated); unknown names raise `TypeError`."""
        return replace(self, **changes)

    def as_values(self) -> dict[str, Any]:
        values = asdict(self)
        values["allowed_channel_ids"] = list(self.allowed_channel_ids)
        values["safety_policy"] = self.safety_policy.value
        return values

    @classmethod
    def from_row(cls, row: GuildSettings | None) -> GuildPolicy:
        """The policy a stored row describes; a row that no longer validates counts as default."""
        if row is None:
            return cls()
        try:
            return cls(
                allowed_channel_ids=tuple(row.allowed_channel_ids or ()),
                required_role_id=row.required_role_id,
                cooldown_s=row.cooldown_s,
                daily_quota=row.daily_quota,
                max_count=row.max_count,
                max_steps=row.max_steps,
                private_default=bool(row.private_default),
                safety_policy=SafetyPolicy(row.safety_policy),
            )
        except (RequestError, ValueError):
            return cls()


POLICY_FIELDS = frozenset(f.name for f in fields(GuildPolicy))


class GuildSettingsRepo:
    """Reads (cached) and changes `guild_settings` rows."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[int, GuildPolicy] = {}
        self._all_loaded = False

    async def get(self, guild_id: int | None) -> GuildPolicy:
        """The server's policy (defaults for direct messages and unknown servers)."""
        if guild_id is None:
            return GuildPolicy()
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        if self._all_loaded:
            return GuildPolicy()
        async with self._db.read() as session:
            row = await session.get(GuildSettings, guild_id)
        policy = GuildPolicy.from_row(row)
        self._cache[guild_id] = policy
        return policy

    async def load_all(self) -> None:
        """Cache every stored server's policy at once (servers without a row use defaults)."""
        async with self._db.read() as session:
            rows = list(await session.scalars(select(GuildSettings)))
        self._cache.update({row.guild_id: GuildPolicy.from_row(row) for row in rows})
        self._all_loaded = True

    def cached(self, guild_id: int | None) -> GuildPolicy | None:
        """The policy if it is in the cache already (no database work), else None."""
        if guild_id is None:
            return GuildPolicy()
        return self._cache.get(guild_id)

    async def update(
        self, guild_id: int, changes: Mapping[str, Any], *, by: int | None = None
    ) -> GuildPolicy:
        """Apply `changes` (field name -> value), validated as a whole before anything is stored."""
        unknown = set(changes) - POLICY_FIELDS
        if unknown:
            raise RequestError("setting", sorted(unknown)[0], ", ".join(sorted(POLICY_FIELDS)))
        async with self._db.write() as session:
            row = await session.get(GuildSettings, guild_id)
            policy = GuildPolicy.from_row(row).changed(**changes)
            if row is None:
                row = GuildSettings(guild_id=guild_id)
                session.add(row)
            for name, value in policy.as_values().items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            row.updated_by = by
        self._cache[guild_id] = policy
        return policy

    async def reset(self, guild_id: int) -> GuildPolicy:
        """Back to the defaults (the row is removed)."""
        async with self._db.write() as session:
            row = await session.get(GuildSettings, guild_id)
            if row is not None:
                await session.delete(row)
        self._cache.pop(guild_id, None)
        return GuildPolicy()
