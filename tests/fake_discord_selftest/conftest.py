"""Fixtures: a started FakeDiscord, and the self-test bot logged in to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.fake_discord import FakeDiscord, point_discord_py_at

from .harness import SelfTestBot, build_bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def selftest_bot(fake: FakeDiscord) -> AsyncIterator[SelfTestBot]:
    """The bot, logged in, READY, and with its commands synced to the fake."""
    with point_discord_py_at(fake.api_base, fake.gateway_url):
        harness = build_bot()
        task = asyncio.create_task(harness.bot.start(fake.token))
        try:
            await fake.wait_ready(within_s=10)
            await asyncio.wait_for(harness.bot.wait_until_ready(), 10)
            await fake.wait_for_commands("imagine", "settings")
            yield harness
        finally:
            await harness.bot.close()
            await asyncio.wait_for(task, 10)
