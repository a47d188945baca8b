"""Who may do what: admins (Administrator permission or FLUXBOT_ADMIN_IDS) and job owners."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from fluxbot.core.errors import NotAllowed

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot


class AdminRequired(app_commands.CheckFailure, NotAllowed):
    """A check failure (so the command tree routes it to cogs/errors.py) meant for the user."""


def is_admin_id(bot: FluxBot, user_id: int, permissions: discord.Permissions | None) -> bool:
    if user_id in bot.settings.admin_ids:
        return True
    return bool(permissions is not None and permissions.administrator)


def is_admin(interaction: discord.Interaction) -> bool:
    bot: FluxBot = interaction.client  # type: ignore[assignment]
    permissions = interaction.permissions if interaction.guild is not None else None
    return is_admin_id(bot, interaction.user.id, permissions)


def admin_only():  # type: ignore[no-untyped-def]
    """Checked on every call, whatever Discord shows: non-admins get a refusal, nothing runs."""

    def predicate(interaction: discord.Interaction) -> bool:
        if not is_admin(interaction):
            raise AdminRequired("This command is for the bot's admins.")
        return True

    return app_commands.check(predicate)
