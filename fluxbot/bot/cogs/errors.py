"""What a Discord user sees for an error: the shared table (fluxbot/app/user_messages.py), the
same one the web studio uses, plus discord.py's own command errors.

Every Discord-visible failure goes through `user_message`; no traceback ever reaches a user.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from fluxbot.app import user_messages
from fluxbot.app.user_messages import Row

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

log = logging.getLogger(__name__)


def _cooldown(exc: BaseException) -> str:
    retry_after = getattr(exc, "retry_after", 0.0)
    return f"Slow down: try again in {retry_after:.0f} s."


def _check_failed(exc: BaseException) -> str:
    return str(exc) or "You can't use this command here."


DISCORD_ROWS: list[Row] = [
    (app_commands.CommandOnCooldown, _cooldown),
    (app_commands.CheckFailure, _check_failed),
]


def _unwrap(error: BaseException) -> BaseException:
    while isinstance(
        error, (app_commands.CommandInvokeError, discord.app_commands.TransformerError)
    ):
        inner = error.__cause__ or getattr(error, "original", None)
        if inner is None:
            break
        error = inner
    return error


def user_message(error: BaseException) -> tuple[str, str | None]:
    """(message, code): code is None for known errors, else a short id also written to the log."""
    return user_messages.user_message(_unwrap(error), DISCORD_ROWS)


async def send_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user ephemerally, whether or not the interaction was answered already."""
    message, _ = user_message(error)
    try:
        if interaction.response.is_done():
            if (
                interaction.response.type
                is discord.InteractionResponseType.deferred_channel_message
            ):
                # A public "thinking…" placeholder must not outlive the failed command.
                await interaction.delete_original_response()
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not deliver an error message to the user", exc_info=True)


def install(bot: FluxBot) -> None:
    """Route every app command and component error through the table."""

    @bot.tree.error
    async def on_app_command_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await send_error(interaction, error)


async def setup(bot: FluxBot) -> None:
    install(bot)
