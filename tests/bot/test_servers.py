"""Powers belong to a place: every privileged action x every role, end to end on two servers,
checked on the bot's state (database, queue), not only on what it says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fluxbot.bot.client import FluxBot
from fluxbot.core.requests import JobStatus
from fluxbot.store.guilds import GuildSettingsRepo
from fluxbot.store.models import GLOBAL_SCOPE
from tests.bot.conftest import BotHarness, TwoServers, answer, imagine_queued, two_servers
from tests.fake_discord.models import FakeChannel, FakeUser


@dataclass
class Role:
    name: str
    user: FakeUser
    channel: FakeChannel


def roles(w: TwoServers) -> list[Role]:
    return [
        Role("owner", w.owner, w.channel_b),  # a bot owner, acting where they are no manager
        Role("manager in A", w.manager, w.channel_a),
        Role("manager of A in B", w.manager, w.channel_b),
        Role("member", w.member, w.channel_a),
    ]


async def queued_job(w: TwoServers, bot: FluxBot, channel: FakeChannel, prompt: str) -> Any:
    await imagine_queued(w.server, w.author, prompt, channel=channel)
    jobs = await bot.store.jobs.queue()
    return next(j for j in reversed(jobs) if j.prompt == prompt)


Case = Callable[[Role, TwoServers, FluxBot], Awaitable[bool]]


async def pause(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    bot.engine.scheduler.resume()
    await answer(w.server, role.user, "admin pause", channel=role.channel)
    paused = bot.engine.scheduler.paused
    bot.engine.scheduler.pause()
    return paused


async def cancel_a_job(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    job = await queued_job(w, bot, w.channel_a, f"cancel by {role.name}")
    await answer(
        w.server, role.user, "admin cancel", {"job_id": job.public_id}, channel=role.channel
    )
    await bot.service.flush()
    return (await bot.store.jobs.require(job.id)).status is JobStatus.CANCELLED


async def react_cancel(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    """❌ on the status message of a queued job of server A (a reaction: no interaction)."""
    if role.channel is not w.channel_a:
        return False  # the message lives in A: nobody reacts to it from B
    record = await imagine_queued(w.server, w.author, f"react {role.name}", channel=w.channel_a)
    job = next(j for j in await bot.store.jobs.queue() if j.prompt == f"react {role.name}")
    await w.server.react(role.user, record.original, "❌")
    for _ in range(60):
        await bot.service.flush()
        if (await bot.store.jobs.require(job.id)).status is JobStatus.CANCELLED:
            return True
        await __import__("asyncio").sleep(0.05)
    return False


async def ban_here(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    guild = w.guild_a if role.channel is w.channel_a else w.guild_b
    await answer(w.server, role.user, "admin ban", {"user": w.author.id}, channel=role.channel)
    banned = guild.id in await bot.store.bans.scopes(w.author.id)
    await bot.store.bans.unban(w.author.id, guild.id)
    return banned


async def unban_here(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    guild = w.guild_a if role.channel is w.channel_a else w.guild_b
    await bot.store.bans.ban(w.author.id, guild.id)
    await answer(w.server, role.user, "admin unban", {"user": w.author.id}, channel=role.channel)
    lifted = guild.id not in await bot.store.bans.scopes(w.author.id)
    await bot.store.bans.unban(w.author.id, guild.id)
    return lifted


async def ban_everywhere(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    await answer(
        w.server,
        role.user,
        "admin ban",
        {"user": w.author.id, "everywhere": True},
        channel=role.channel,
    )
    banned = GLOBAL_SCOPE in await bot.store.bans.scopes(w.author.id)
    await bot.store.bans.unban(w.author.id, None)
    return banned


async def settings_of_a(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    """A manager changes the settings of the server they act in; did server A's change?"""
    await bot.store.guilds.reset(w.guild_a.id)
    await bot.store.guilds.reset(w.guild_b.id)
    await answer(w.server, role.user, "server settings", {"cooldown": 7}, channel=role.channel)
    stored = GuildSettingsRepo(bot.store.db)  # what is in the database, not the bot's cache
    changed_b = (await stored.get(w.guild_b.id)).cooldown_s == 7
    assert not changed_b or role.name == "owner", f"{role.name} changed server B's settings"
    return (await stored.get(w.guild_a.id)).cooldown_s == 7 or changed_b


async def history_of_author(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    job = await queued_job(w, bot, w.channel_a, f"history {role.name}")
    record = await answer(
        w.server, role.user, "history", {"user": w.author.id}, channel=role.channel
    )
    shown = record.messages[-1]
    return any(job.public_id in str(e) for e in shown.embeds)


async def queue_listing(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    """Sees A's queued job; a manager of A never sees B's job."""
    a_job = await queued_job(w, bot, w.channel_a, f"queue A {role.name}")
    b_job = await queued_job(w, bot, w.channel_b, f"queue B {role.name}")
    record = await answer(w.server, role.user, "queue", channel=role.channel)
    text = record.messages[-1].content
    if role.name != "owner":
        assert b_job.public_id not in text, f"{role.name} saw server B's job"
    return a_job.public_id in text


async def stats_of_a(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    record = await answer(w.server, role.user, "server stats", channel=role.channel)
    return "Per member" in record.messages[-1].content and role.channel is w.channel_a


async def resume(role: Role, w: TwoServers, bot: FluxBot) -> bool:
    bot.engine.scheduler.pause()
    await answer(w.server, role.user, "admin resume", channel=role.channel)
    resumed = not bot.engine.scheduler.paused
    bot.engine.scheduler.pause()
    return resumed


# action -> roles allowed (every other role must be refused)
TABLE: list[tuple[str, Case, set[str]]] = [
    ("pause the bot", pause, {"owner"}),
    ("resume the bot", resume, {"owner"}),
    ("cancel a job of A (/admin cancel)", cancel_a_job, {"owner", "manager in A"}),
    ("cancel a job of A (❌ reaction)", react_cancel, {"manager in A"}),
    ("ban where one acts", ban_here, {"owner", "manager in A"}),
    ("unban where one acts", unban_here, {"owner", "manager in A"}),
    ("ban everywhere", ban_everywhere, {"owner"}),
    ("change A's settings", settings_of_a, {"manager in A", "owner"}),
    ("read a member's history", history_of_author, {"owner", "manager in A"}),
    ("list the queue", queue_listing, {"owner", "manager in A"}),
    ("read A's usage", stats_of_a, {"manager in A"}),
]


async def test_every_privileged_action_by_every_role(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    bot = await harness.start(user_queue_cap=100)
    bot.engine.scheduler.pause()
    wrong: dict[tuple[str, str], bool] = {}
    for action, case, allowed in TABLE:
        for role in roles(w):
            happened = await case(role, w, bot)
            if happened != (role.name in allowed):
                wrong[(action, role.name)] = happened
    assert not wrong, f"(action, role) -> happened, against the table: {wrong}"


async def test_purge_is_for_owners_only(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    bot = await harness.start(user_queue_cap=100)
    bot.engine.scheduler.pause()
    await queued_job(w, bot, w.channel_a, "to purge")
    for user, channel in ((w.manager, w.channel_a), (w.member, w.channel_a)):
        refused = await answer(
            w.server, user, "admin purge", {"user": w.author.id}, channel=channel
        )
        assert "owners" in refused.messages[-1].content
        assert len((await bot.store.jobs.for_user(w.author.id)).jobs) == 1
    await answer(w.server, w.owner, "admin purge", {"user": w.author.id}, channel=w.channel_b)
    assert (await bot.store.jobs.for_user(w.author.id)).total == 0


async def test_history_page_buttons_are_checked_on_every_press(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    bot = await harness.start(user_queue_cap=100)
    bot.engine.scheduler.pause()
    for i in range(9):
        await queued_job(w, bot, w.channel_a, f"page {i}")
    await queued_job(w, bot, w.channel_b, "made in B")
    page = await answer(w.server, w.manager, "history", {"user": w.author.id}, channel=w.channel_a)
    message = page.messages[-1]
    assert "Page 1 of 2" in message.embeds[0]["footer"]["text"], "B's job is not counted"
    older = next(c for c in message.custom_ids() if c.endswith(":next"))
    forged = await w.server.click(w.member, message, older)
    await forged.wait_response(within_s=3.0)
    assert "Page 1 of 2" in message.embeds[0]["footer"]["text"], "a member turned the page"
    pressed = await w.server.click(w.manager, message, older)
    await pressed.wait_response(within_s=3.0)
    assert "Page 2 of 2" in message.embeds[0]["footer"]["text"]
    assert all("made in B" not in str(e) for e in message.embeds)
