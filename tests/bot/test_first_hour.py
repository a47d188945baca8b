"""What a new owner meets when the bot first connects: the invite URL when it is in no
server, the steps option following FLUXBOT_MAX_STEPS, and a heartbeat for health checks."""

from __future__ import annotations

import logging

import pytest

from fluxbot.app.health import read_heartbeat
from fluxbot.bot.permissions import invite_url
from tests.bot.conftest import BotHarness, wait_for


def _option(command: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(option for option in command["options"] if option["name"] == name)


async def test_steps_follow_fluxbot_max_steps_and_the_heartbeat_says_ready(
    harness: BotHarness,
) -> None:
    bot = await harness.start(max_steps=12)
    server = harness.server
    imagine = _option(server.command("imagine"), "steps")
    assert (imagine["min_value"], imagine["max_value"]) == (1, 12)
    settings = server.command("settings")
    assert settings is not None
    default_steps = _option(settings, "steps")
    assert default_steps["max_value"] == 12 and "1 to 12" in default_steps["description"]

    verdict = await wait_for(
        lambda: (v := read_heartbeat(harness.data_dir, 60.0)).healthy and v,
        what="a healthy heartbeat",
    )
    assert "connected to 1 server(s), 1 of 1 worker(s) ready" in verdict.line
    await harness.stop()
    assert not bot.heartbeat().connected
    assert "not connected" in read_heartbeat(harness.data_dir, 60.0).line


async def test_a_bot_in_no_server_logs_its_invite_url(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.server.state.guilds.clear()
    caplog.set_level(logging.INFO, logger="fluxbot")
    await harness.start()
    url = invite_url(harness.server.application_id)
    await wait_for(lambda: url in caplog.text, what="the invite URL in the log")
    assert "in no server yet" in caplog.text
