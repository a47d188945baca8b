"""Bad events never stop the bot: malformed gateway events are dropped one by one, and command
payloads that do not fit their declaration are answered (within Discord's 3 s) without a job."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from fluxbot.store.models import JobRow
from tests.bot.conftest import BotHarness, wait_for
from tests.fake_discord.server import FakeDiscord


async def job_count(harness: BotHarness) -> int:
    assert harness.bot is not None
    async with harness.bot.store.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(JobRow)) or 0)


async def still_serving(harness: BotHarness) -> None:
    """The process is alive and answers a command."""
    server = harness.server
    assert harness._task is not None and not harness._task.done(), "the bot stopped"
    record = await server.slash(server.alice, "seed")
    await record.wait_response(within_s=3.0)
    await wait_for(lambda: record.messages, what="the /seed answer")


def _component(server: FakeDiscord) -> dict[str, Any]:
    """A well-formed button press on some message, to be broken by each case."""
    return {
        "id": str(server.state.ids.next()),
        "application_id": str(server.application_id),
        "type": 3,
        "token": "x" * 40,
        "version": 1,
        "channel_id": str(server.channel.id),
        "guild_id": str(server.guild.id),
        "member": server.state.member_payload(server.guild, server.alice, permissions="0"),
        "data": {"custom_id": "flux:reroll:ABCD1234", "component_type": 2},
        "message": {
            "id": str(server.state.ids.next()),
            "channel_id": str(server.channel.id),
            "author": server.bot_user.payload(),
            "content": "",
            "timestamp": "2026-12-02T10:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        },
        "locale": "en-US",
        "entitlements": [],
    }


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = payload
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = payload
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


MALFORMED_EVENTS = {
    "interaction without data.custom_id": _drop("data.custom_id"),
    "non-numeric interaction id": _set("id", "not-a-number"),
    "member without user": _drop("member.user"),
    "non-numeric permissions": _set("member.permissions", "lots"),
    "non-numeric channel id": _set("channel_id", "general"),
}


async def test_malformed_gateway_events_cost_one_event_each(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    for mutate in MALFORMED_EVENTS.values():
        payload = _component(server)
        mutate(payload)
        await server.raw_event("INTERACTION_CREATE", payload)
        await still_serving(harness)
    reaction = {
        "user_id": str(server.alice.id),
        "channel_id": str(server.channel.id),
        "message_id": str(server.state.ids.next()),
        "guild_id": str(server.guild.id),
        "emoji": {"id": None, "name": "🔁"},
        "member": {"roles": [], "joined_at": "2026-01-01T00:00:00+00:00"},  # no user
        "type": 0,
    }
    await server.raw_event("MESSAGE_REACTION_ADD", reaction)
    broken = copy.deepcopy(reaction)
    broken["user_id"] = "someone"
    await server.raw_event("MESSAGE_REACTION_ADD", broken)
    await still_serving(harness)


def _option(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


BAD_PAYLOADS = {
    "a string where a boolean is declared": (
        [_option("prompt", type=3, value="fox"), _option("private", type=3, value="yes")],
        "private",
    ),
    "a boolean option carrying a string": (
        [_option("prompt", type=3, value="fox"), _option("private", type=5, value="yes")],
        "private",
    ),
    "steps 1.5 as a number": (
        [_option("prompt", type=3, value="fox"), _option("steps", type=10, value=1.5)],
        "steps",
    ),
    "steps 1.5 declared as a whole number": (
        [_option("prompt", type=3, value="fox"), _option("steps", type=4, value=1.5)],
        "steps",
    ),
    "steps out of range": (
        [_option("prompt", type=3, value="fox"), _option("steps", type=4, value=99)],
        "steps",
    ),
    "an option without a value": ([_option("prompt", type=3)], "prompt"),
    "an option without a type": ([_option("prompt", value="fox")], "prompt"),
    "the required prompt missing": ([_option("count", type=4, value=1)], "prompt"),
    "an unknown option": (
        [_option("prompt", type=3, value="fox"), _option("sneaky", type=3, value="x")],
        "sneaky",
    ),
    "an aspect that is not a choice": (
        [_option("prompt", type=3, value="fox"), _option("aspect", type=3, value="7:5")],
        "aspect",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PAYLOADS), ids=list(BAD_PAYLOADS))
async def test_malformed_options_are_answered_and_make_no_job(
    harness: BotHarness, case: str
) -> None:
    await harness.start()
    server = harness.server
    options, named = BAD_PAYLOADS[case]
    record = await server.raw_slash(
        server.alice, "imagine", _set("data.options", copy.deepcopy(options))
    )
    await record.wait_response(within_s=3.0)
    reply = await wait_for(lambda: record.messages, what="the refusal")
    assert record.ephemeral
    assert named in reply[-1].content and "Nothing was done" in reply[-1].content, reply[-1].content
    assert await job_count(harness) == 0
    await still_serving(harness)


async def test_a_malformed_settings_call_is_refused_before_the_store(harness: BotHarness) -> None:
    """steps 1.5 sent as a number was stored and broke the member's later /imagine."""
    await harness.start()
    server = harness.server
    record = await server.raw_slash(
        server.alice, "settings", _set("data.options", [_option("steps", type=10, value=1.5)])
    )
    await record.wait_response(within_s=3.0)
    await wait_for(lambda: record.messages, what="the refusal")
    assert harness.bot is not None
    user = await harness.bot.store.users.get(server.alice.id)
    assert user is None or user.default_steps == 4
    later = await server.slash(server.alice, "imagine", {"prompt": "a fox", "steps": 1})
    await later.wait_response(within_s=3.0)
    result = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    assert f"<@{server.alice.id}>" in result.content
