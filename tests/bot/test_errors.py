"""Every user-facing error, raised inside a real command, reaches the user as its sentence.

The classes are discovered (every subclass of `UserError` anywhere in fluxbot), so a new one
without an entry in EXAMPLES fails here instead of showing "Something went wrong" to users.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from datetime import UTC, datetime

import discord
import pytest
from discord import app_commands
from discord.ext import commands

import fluxbot
from fluxbot.app.admission import Refused
from fluxbot.app.export import UnknownUser
from fluxbot.app.permissions import PermissionDenied
from fluxbot.bot.login import DiscordUnreachable, TokenRejected
from fluxbot.bot.tree import InvalidPayload
from fluxbot.cli.commands import ModelUnavailable
from fluxbot.cli.main import CliError
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import RequestError
from fluxbot.engine.animation import GifTooLarge
from fluxbot.prompts.policy import REASON_EXPLICIT, PolicyRefused
from fluxbot.serving.scheduler import QueueFull, SchedulerClosed
from fluxbot.store.errors import JobNotFound, MigrationError
from fluxbot.store.usage import CooldownActive, LimitReached, QuotaReached
from tests.bot.conftest import BotHarness, wait_for

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
STAMP = int(UNTIL.timestamp())

# One example of each user-facing error and the exact message a Discord user must see.
EXAMPLES: dict[type[UserError], tuple[UserError, str]] = {
    UserError: (UserError("Pick a job of yours."), "Pick a job of yours."),
    NotAllowed: (NotAllowed("Not yours."), "🔒 Not yours."),
    RequestError: (
        RequestError("steps", 20, "1 to 8"),
        "That didn't work: steps 20 is not allowed: 1 to 8.",
    ),
    PolicyRefused: (PolicyRefused(REASON_EXPLICIT), f"🚫 {REASON_EXPLICIT}"),
    QueueFull: (
        QueueFull(scope="user", cap=2, waiting=5, user_waiting=2),
        "⏳ You already have 2 job(s) waiting, and the limit is 2 per person. "
        "Wait for one to finish, or cancel one.",
    ),
    SchedulerClosed: (
        SchedulerClosed("No GPU is available to make images right now."),
        "⏸️ No GPU is available to make images right now.",
    ),
    GifTooLarge: (
        GifTooLarge("it needs 12 MB"),
        "The animation is too big to upload: it needs 12 MB.",
    ),
    JobNotFound: (JobNotFound(42), "That job no longer exists: it was deleted, or never existed."),
    MigrationError: (MigrationError("no migrations"), "no migrations"),
    CliError: (CliError("--seed 'x' is not a whole number"), "--seed 'x' is not a whole number"),
    ModelUnavailable: (ModelUnavailable("download the model"), "download the model"),
    UnknownUser: (UnknownUser(7), str(UnknownUser(7))),
    DiscordUnreachable: (DiscordUnreachable("no route"), "no route"),
    TokenRejected: (TokenRejected("check DISCORD_TOKEN"), "check DISCORD_TOKEN"),
    PermissionDenied: (
        PermissionDenied("Only a manager of this server can do that."),
        "🔒 Only a manager of this server can do that.",
    ),
    Refused: (
        Refused("The bot is not used in this channel."),
        "🚫 The bot is not used in this channel.",
    ),
    InvalidPayload: (
        InvalidPayload("option steps must be a whole number"),
        "option steps must be a whole number",
    ),
    LimitReached: (LimitReached("Slow down.", UNTIL), "⏳ Slow down."),
    CooldownActive: (
        CooldownActive(UNTIL),
        f"⏳ This server has a cooldown between images: try again <t:{STAMP}:R>.",
    ),
    QuotaReached: (
        QuotaReached(3, UNTIL),
        f"⏳ You have made your 3 image job(s) for today in this server; the quota resets "
        f"<t:{STAMP}:R>.",
    ),
}


def user_error_classes() -> set[type[UserError]]:
    """Every subclass of UserError defined in fluxbot (all its modules imported first)."""
    for module in pkgutil.walk_packages(fluxbot.__path__, "fluxbot."):
        if module.name != "fluxbot.__main__":
            importlib.import_module(module.name)
    found: set[type[UserError]] = set()
    todo = [UserError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("fluxbot.") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_user_error_class_has_an_example() -> None:
    missing = user_error_classes() - set(EXAMPLES)
    assert not missing, f"add an example to EXAMPLES for {sorted(c.__name__ for c in missing)}"


class Raiser(commands.Cog):
    """A test-only command that raises the error it is told to, inside the real command tree."""

    @app_commands.command(name="fail", description="Raise an error (tests only)")
    async def fail(self, interaction: discord.Interaction, kind: str) -> None:
        if kind == "unexpected":
            raise RuntimeError("a bug")
        raise EXAMPLES[next(c for c in EXAMPLES if c.__name__ == kind)][0]


async def test_the_handler_shows_every_user_error_and_codes_the_rest(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await harness.start()
    server = harness.server
    await bot.add_cog(Raiser())
    await bot.sync_commands(force=True)
    await server.wait_for_commands("fail")
    for cls, (_, expected) in EXAMPLES.items():
        record = await server.slash(server.alice, "fail", {"kind": cls.__name__})
        await wait_for(lambda r=record: r.messages, what=f"the answer to {cls.__name__}")
        assert record.messages[-1].ephemeral
        assert record.messages[-1].content == expected, cls.__name__

    caplog.set_level(logging.ERROR, logger="fluxbot.bot.cogs.errors")
    record = await server.slash(server.alice, "fail", {"kind": "unexpected"})
    await wait_for(lambda: record.messages, what="the answer to a bug")
    shown = record.messages[-1].content
    assert shown.startswith("Something went wrong on our side (error `")
    assert record.messages[-1].ephemeral
    code = shown.split("`")[1]
    logged = [r for r in caplog.records if code in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "a bug" in str(logged[0].exc_info[1])
    assert "RuntimeError" not in shown and "a bug" not in shown


async def test_imagine_while_shutting_down_says_so_and_stores_nothing(
    harness: BotHarness,
) -> None:
    bot = await harness.start()
    server = harness.server
    await bot.service.shutdown(grace_s=5.0)
    record = await server.slash(server.alice, "imagine", {"prompt": "a late fox", "steps": 1})
    answer = await wait_for(
        lambda: record.messages and record.messages[-1].content and record.messages[-1],
        what="an answer",
    )
    assert answer.content == "⏸️ The bot is shutting down and takes no new jobs right now."
    assert (await bot.store.jobs.for_user(server.alice.id)).total == 0
