"""Every user-facing error, raised inside a real command, reaches the user as its sentence.

The classes are discovered (every subclass of `UserError` anywhere in fluxbot), so a new one
without an entry in EXAMPLES fails here instead of showing "Something went wrong" to users.
"""

from __future__ import annotations

import logging

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.bot.conftest import BotHarness, wait_for
from tests.user_errors import EXAMPLES, user_error_classes


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

    caplog.set_level(logging.ERROR, logger="fluxbot.app.user_messages")
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
