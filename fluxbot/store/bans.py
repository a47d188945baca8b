"""BanRepo: bans in one server (its managers) or everywhere (the bot's owners)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.exc import IntegrityError

from fluxbot.store.db import Database
from fluxbot.store.models import GLOBAL_SCOPE, Ban


def scope_of(guild_id: int | None) -> int:
    """The stored scope of a ban: a server's id, or GLOBAL_SCOPE for None (everywhere)."""
    return GLOBAL_SCOPE if guild_id is None else guild_id


class BanRepo:
    """Reads and changes `bans` rows; `guild_id=None` means the bot-wide ban."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ban(self, user_id: int, guild_id: int | None, *, by: int | None = None) -> bool:
        """Ban `user_id` in that scope; False if they already were."""
        try:
            async with self._db.write() as session:
                exists = await session.scalar(
                    select(Ban.id).where(Ban.user_id == user_id, Ban.guild_id == scope_of(guild_id))
                )
                if exists is not None:
                    return False
                session.add(Ban(user_id=user_id, guild_id=scope_of(guild_id), banned_by=by))
        except IntegrityError:
            return False
        return True

    async def unban(self, user_id: int, guild_id: int | None) -> bool:
        """Lift the ban in exactly that scope; False if there was none."""
        async with self._db.write() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    delete(Ban).where(Ban.user_id == user_id, Ban.guild_id == scope_of(guild_id))
                ),
            )
            return result.rowcount > 0

    async def is_banned(self, user_id: int, guild_id: int | None) -> bool:
        """Banned everywhere, or in this server."""
        scopes = {GLOBAL_SCOPE, scope_of(guild_id)}
        async with self._db.read() as session:
            found = await session.scalar(
                select(Ban.id).where(Ban.user_id == user_id, Ban.guild_id.in_(scopes)).limit(1)
            )
            return found is not None

    async def scopes(self, user_id: int) -> set[int]:
        """Where the user is banned (GLOBAL_SCOPE for everywhere)."""
        async with self._db.read() as session:
            return set(await session.scalars(select(Ban.guild_id).where(Ban.user_id == user_id)))
