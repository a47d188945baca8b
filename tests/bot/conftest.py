"""The real bot (FluxBot, real discord.py, tiny-random model, SQLite file) against FakeDiscord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluxbot.bot.client import FluxBot, create_bot
from fluxbot.config import Settings, load_settings
from tests.fake_discord import permissions
from tests.fake_discord.models import FakeChannel, FakeGuild, FakeRole, FakeUser
from tests.fake_discord.server import FakeDiscord

BOT_START_S = 60.0
BOT_STOP_S = 90.0  # its own drain allows 30 s for a running job, then 10 s to stop it


def _awaiting(task: asyncio.Task[Any]) -> str:
    """The task's chain of awaits, outermost first, down to what it waits on."""
    chain: list[str] = []
    step: Any = task.get_coro()
    while step is not None:
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is None:
            chain.append(repr(step)[:120])
            break
        code = frame.f_code
        chain.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return " -> ".join(chain)


def pending_tasks() -> str:
    """Every unfinished asyncio task with the chain of awaits it is stuck in."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    return "\n".join(f"  {t.get_name()}: {_awaiting(t)}" for t in tasks)


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
            try:
                await asyncio.wait_for(self.bot.close(), BOT_STOP_S)
            except TimeoutError:
                raise AssertionError(
                    f"the bot did not close within {BOT_STOP_S:.0f} s; tasks:\n{pending_tasks()}"
                ) from None
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 30)
        self.bot, self._task = None, None


LEFTOVER_S = 20.0


@pytest.fixture(autouse=True)
async def _no_stuck_tasks() -> AsyncIterator[None]:
    """After the bot and the fake have stopped (this fixture is torn down last), every task left
    on the loop must end when cancelled: one that does not would hang the loop's teardown until
    pytest-timeout; fail here instead, naming it."""
    yield
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        _, stuck = await asyncio.wait(leftover, timeout=LEFTOVER_S)
        if stuck:
            raise AssertionError(
                f"{len(stuck)} task(s) did not end {LEFTOVER_S:.0f} s after being cancelled:\n"
                + pending_tasks()
            )


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


async def imagine_queued(
    server: FakeDiscord, user: Any, prompt: str, *, channel: Any = None, **options: Any
) -> Any:
    """Run /imagine and wait until the bot says the job is queued (commands run concurrently)."""
    record = await server.slash(
        user, "imagine", {"prompt": prompt, "steps": 1, **options}, channel=channel
    )
    try:
        await wait_for(lambda: record.original and "position" in record.original.content)
    except AssertionError:
        said = [m.content for m in record.messages]
        raise AssertionError(f"/imagine {prompt!r} was not queued; the bot said {said}") from None
    return record


@dataclass
class TwoServers:
    """Server A (the fake's own guild) and server B, and who is what where.

    `owner` owns the application (a bot owner) and is a plain member of B; `manager` has Manage
    Server in A and is a plain member of B; `member` (alice) and `author` (bob) are plain
    members of both.
    """

    server: FakeDiscord
    owner: FakeUser
    manager: FakeUser
    member: FakeUser
    author: FakeUser
    guild_a: FakeGuild
    channel_a: FakeChannel
    nsfw_a: FakeChannel
    guild_b: FakeGuild
    channel_b: FakeChannel
    managers_role: FakeRole


def two_servers(server: FakeDiscord) -> TwoServers:
    """Add server B and a server-A manager to the fake world (call before the bot starts)."""
    state = server.state
    managers_role = state.add_role(server.guild, "Managers", permissions.MANAGE_GUILD)
    manager = server.add_user("manager_a", roles=[managers_role])
    owner_b = state.add_user("owner_b")
    guild_b = state.add_guild("server B", owner_b)
    bot_role_b = state.add_role(
        guild_b,
        server.bot_user.username,
        permissions.BOT_ROLE_DEFAULT,
        managed=True,
        bot_id=server.bot_user.id,
    )
    state.add_member(guild_b, owner_b)
    state.add_member(guild_b, server.bot_user, [bot_role_b])
    for user in (server.owner, manager, server.alice, server.bob):
        state.add_member(guild_b, user)
    channel_b = state.add_channel(guild_b, "general-b")
    return TwoServers(
        server=server,
        owner=server.owner,
        manager=manager,
        member=server.alice,
        author=server.bob,
        guild_a=server.guild,
        channel_a=server.channel,
        nsfw_a=server.nsfw_channel,
        guild_b=guild_b,
        channel_b=channel_b,
        managers_role=managers_role,
    )


async def answer(
    server: FakeDiscord, user: FakeUser, name: str, options: dict[str, Any] | None = None, **kw: Any
) -> Any:
    """Run a command and wait for its (last) visible answer; returns the interaction record."""
    record = await server.slash(user, name, options or {}, **kw)
    await record.wait_response(within_s=3.0)
    await wait_for(
        lambda: record.messages and not record.messages[-1].loading,
        within_s=30,
        what=f"the answer to /{name}",
    )
    return record


async def said(record: Any, within_s: float = 30.0) -> Any:
    """The interaction's last message once it says something (a deferred "thinking…" does not)."""

    def check() -> Any:
        messages = [m for m in record.messages if not m.deleted and not m.loading and m.content]
        return messages[-1] if messages else None

    return await wait_for(check, within_s=within_s, what=f"an answer to {record.name!r}")
