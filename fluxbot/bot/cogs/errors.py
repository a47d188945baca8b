"""One table from error to what the user sees; everything else gets a short code that is logged.

Every Discord-visible failure goes through `user_message`; no traceback ever reaches a user.
Any `UserError` (fluxbot/core/errors.py) is shown as its message, so a new user-facing error is
covered by construction; the rows above it only add an emoji or a lead-in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from fluxbot.app.admission import Refused
from fluxbot.app.permissions import PermissionDenied
from fluxbot.bot.tree import InvalidPayload
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import RequestError
from fluxbot.engine.animation import GifTooLarge
from fluxbot.prompts.policy import PolicyRefused
from fluxbot.serving.scheduler import QueueFull, SchedulerClosed
from fluxbot.store.usage import LimitReached

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

log = logging.getLogger(__name__)


def _invalid_option(exc: BaseException) -> str:
    return f"That didn't work: {exc}."


def _cooldown(exc: BaseException) -> str:
    retry_after = getattr(exc, "retry_after", 0.0)
    return f"Slow down: try again in {retry_after:.0f} s."


def _check_failed(exc: BaseException) -> str:
    return str(exc) or "You can't use this command here."


ERROR_TABLE: list[tuple[type[BaseException], Callable[[BaseException], str]]] = [
    (InvalidPayload, str),
    (PermissionDenied, lambda e: f"🔒 {e}"),
    (LimitReached, lambda e: f"⏳ {e}"),
    (Refused, lambda e: f"🚫 {e}"),
    (PolicyRefused, lambda e: f"🚫 {e}"),
    (RequestError, _invalid_option),
    (QueueFull, lambda e: f"⏳ {e}"),
    (SchedulerClosed, lambda e: f"⏸️ {e}"),
    (NotAllowed, lambda e: f"🔒 {e}"),
    (GifTooLarge, lambda e: f"The animation is too big to upload: {e}."),
    (UserError, str),
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
    error = _unwrap(error)
    for kind, render in ERROR_TABLE:
        if isinstance(error, kind):
            return render(error), None
    code = secrets.token_hex(3)
    log.error("unexpected error %s", code, exc_info=(type(error), error, error.__traceback__))
    return f"Something went wrong on our side (error `{code}`); the admins can look it up.", code


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
