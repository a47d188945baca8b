"""Whether a new job may be queued, under the server's policy: checked before anything is queued.

Bans (in that server or everywhere), the channels where the bot may be used, the role required
to generate, the server's caps on count and steps, then the per-user cooldown and daily quota
(counted in the same transaction that checks them; bot owners, and a server's managers in that
server, are counted but never limited). Each refusal is a sentence for the user.
Discord-free, so the web studio applies the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxbot.app.permissions import Actor, exempt_from_limits
from fluxbot.core.errors import UserError
from fluxbot.store import Store
from fluxbot.store.guilds import GuildPolicy
from fluxbot.store.usage import Claim


class Refused(UserError):
    """The server's policy refuses the job; `str()` is meant for the user."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks for a job, and from where."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    # The member's roles in that server (None where roles do not apply: DMs, the CLI).
    role_ids: frozenset[int] | None = None
    age_restricted_channel: bool = False


class Admission:
    """The policy checks of one front end's job requests, over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def policy(self, guild_id: int | None) -> GuildPolicy:
        return await self.store.guilds.get(guild_id)

    async def check_requester(self, who: Requester) -> GuildPolicy:
        """Ban, channel and role: everything that does not depend on the request itself."""
        if await self.store.bans.is_banned(who.user_id, who.guild_id):
            raise Refused("You are not allowed to make images with this bot here.")
        policy = await self.policy(who.guild_id)
        if who.guild_id is None:
            return policy
        if not policy.allows_channel(who.channel_id):
            places = ", ".join(f"<#{c}>" for c in policy.allowed_channel_ids[:5])
            raise Refused(f"Images are not made in this channel on this server; try {places}.")
        role = policy.required_role_id
        if role is not None and (who.role_ids is None or role not in who.role_ids):
            raise Refused(f"Making images on this server needs the <@&{role}> role.")
        return policy

    @staticmethod
    def check_request(policy: GuildPolicy, fields: dict[str, Any]) -> None:
        """The server's caps on a request's count and steps."""
        count, steps = fields.get("count", 1), fields.get("steps", 4)
        if policy.max_count is not None and count > policy.max_count:
            raise Refused(
                f"This server allows at most {policy.max_count} image(s) per job; "
                f"ask for count {policy.max_count} or fewer."
            )
        if policy.max_steps is not None and steps > policy.max_steps:
            raise Refused(
                f"This server allows at most {policy.max_steps} steps; "
                f"ask for steps {policy.max_steps} or fewer (or change your /settings)."
            )

    async def claim(self, who: Requester, policy: GuildPolicy, actor: Actor) -> Claim:
        """Count the job against the cooldown and daily quota (raises `LimitReached`); `actor`
        (the same person as `who`) says whether those limits apply to them."""
        limited = not exempt_from_limits(actor, who.guild_id)
        return await self.store.usage.claim(
            who.guild_id,
            who.user_id,
            cooldown_s=policy.cooldown_s if limited else 0,
            daily_quota=policy.daily_quota if limited else 0,
        )

    async def release(self, claim: Claim) -> None:
        """The job was not queued after all: give the claim back."""
        await self.store.usage.release(claim)
