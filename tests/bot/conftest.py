"""The real bot (FluxBot, real discord.py, tiny-random model, SQLite file) against FakeDiscord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fluxbot.bot.client import FluxBot, create_bot
from fluxbot.config import Settings, load_settings
from tests.fake_discord.server import FakeDiscord

BOT_START_S = 60.0


class BotHarness:
    """Starts and stops the bot as `fluxbot run` would, against one fake Discord."""

    def __init__(self, server: FakeDiscord, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.bot: FluxBot | None = None
        self._task: asyncio.Task[None] | None = None

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.server.token,
            "model": "tiny-random",
            "data_dir": self.data_dir,
            "gpus": "cpu",
            "discord_api_base": self.server.api_base,
            "discord_gateway_url": self.server.gateway_url,
            "min_size": 64,
            "admin_ids": "",
        }
        values.update(overrides)
        return load_settings(**values)

    async def start(self, **overrides: Any) -> FluxBot:
        bot = await create_bot(self.settings(**overrides))
        self.bot = bot
        self._task = asyncio.create_task(bot.start(self.server.token))
        await self.server.wait_ready(within_s=BOT_START_S)
        await self.server.wait_for_commands("imagine", within_s=BOT_START_S)
        ready = await asyncio.wait_for(
            asyncio.gather(*(w.wait_ready() for w in bot.engine.scheduler.workers)), BOT_START_S
        )
        assert all(ready), "the tiny model did not load"
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 30)
        self.bot, self._task = None, None


@pytest.fixture
async def discord_server() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def harness(discord_server: FakeDiscord, tmp_path: Path) -> AsyncIterator[BotHarness]:
    h = BotHarness(discord_server, tmp_path / "data")
    try:
        yield h
    finally:
        await h.stop()


async def wait_for(check: Callable[[], Any], within_s: float = 30.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def results(server: FakeDiscord) -> list[Any]:
    """Posted results (messages with images and an embed), oldest first."""
    return [m for m in server.messages() if m.attachments and m.embeds]


async def imagine_queued(server: FakeDiscord, user: Any, prompt: str, **options: Any) -> Any:
    """Run /imagine and wait until the bot says the job is queued (commands run concurrently)."""
    record = await server.slash(user, "imagine", {"prompt": prompt, "steps": 1, **options})
    await wait_for(lambda: record.original and "position" in record.original.content)
    return record
