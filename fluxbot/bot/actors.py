"""Discord's view of who acts: an `Actor` (fluxbot.app.permissions) from an interaction or a
reaction, and a `Requester` (fluxbot.app.admission) for a new job.

A server manager is someone with Manage Server or Administrator in the server the interaction
comes from; bot owners are the bot's `owner_ids` (the application's owner or team members, and
FLUXBOT_ADMIN_IDS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from fluxbot.app.admission import Requester
from fluxbot.app.permissions import Actor

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot


def is_manager(permissions: discord.Permissions | None) -> bool:
    return permissions is not None and (permissions.manage_guild or permissions.administrator)


def actor_for(
    bot: FluxBot, user_id: int, guild_id: int | None, permissions: discord.Permissions | None
) -> Actor:
    """The actor for `user_id` acting in `guild_id` with `permissions` there (None: unknown)."""
    return Actor(
        user_id=user_id,
        owner=user_id in bot.owner_ids,
        guild_id=guild_id,
        manager=guild_id is not None and is_manager(permissions),
    )


def actor_of(interaction: discord.Interaction) -> Actor:
    # The ignore below: interaction.client is typed discord.Client; here it is the FluxBot.
    bot: FluxBot = interaction.client  # type: ignore[assignment]
    permissions = interaction.permissions if interaction.guild_id is not None else None
    return actor_for(bot, interaction.user.id, interaction.guild_id, permissions)


def is_age_restricted(channel: object) -> bool:
    """A channel flagged NSFW (age-restricted); unknown channels count as not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def role_ids(user: discord.abc.User | None) -> frozenset[int] | None:
    """A member's role ids (their server's cached roles); None for a plain user."""
    if not isinstance(user, discord.Member):
        return None
    return frozenset(role.id for role in user.roles)


def requester_of(interaction: discord.Interaction) -> Requester:
    return Requester(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=role_ids(interaction.user) if interaction.guild_id is not None else None,
        age_restricted_channel=is_age_restricted(interaction.channel),
    )
