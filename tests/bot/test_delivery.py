"""Delivery that never gives up: a result whose post fails is retried with backoff (each failure
kind against the fake Discord's fault injection), posted exactly once, and a result that still
cannot be posted is recorded, posted again after a restart, and `/show` always gets it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from fluxbot.bot.client import FluxBot
from fluxbot.bot.delivery import RetryPolicy, with_retries
from tests.bot.conftest import BotHarness, answer, imagine_queued, wait_for
from tests.fake_discord.models import StoredMessage
from tests.fake_discord.server import FakeDiscord

CHANNEL_POST = r"^/channels/\d+/messages$"
FOLLOWUP_POST = r"^/webhooks/\d+/[^/]+$"
FAST = {"delivery_attempts": 4, "delivery_timeout_s": 2.0, "delivery_backoff_s": 0.05}


def results(server: FakeDiscord) -> list[StoredMessage]:
    return [m for m in server.messages() if m.attachments and m.embeds]


def job_id_of(message: StoredMessage) -> str:
    return str(message.embeds[0]["fields"][-1]["value"]).strip("`")


async def delivered(bot: FluxBot, job_id: str) -> None:
    """Wait until the store knows the job's result message (it is written just after posting)."""
    for _ in range(200):
        row = await bot.store.jobs.by_public_id(job_id)
        if row is not None and row.delivered_at is not None and row.result_message_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} was never marked delivered")


async def first_result(server: FakeDiscord, bot: FluxBot) -> StoredMessage:
    await server.slash(server.alice, "imagine", {"prompt": "a kite", "seed": 3, "steps": 1})
    await wait_for(lambda: results(server), within_s=90, what="the first result")
    await delivered(bot, job_id_of(results(server)[0]))
    return results(server)[0]


async def reroll_through(
    server: FakeDiscord, bot: FluxBot, original: StoredMessage, fault: Callable[[], None]
) -> StoredMessage:
    """Press 🔁 with `fault` armed on the channel post that carries the reroll's result."""
    before = len(results(server))
    fault()
    reroll = next(c for c in original.custom_ids() if c.startswith("flux:reroll:"))
    await server.click(server.alice, original, reroll)
    await wait_for(lambda: len(results(server)) > before, within_s=90, what="the reroll")
    await server.wait_until(lambda: not server.rest.faults, what="the fault to be used up")
    message = results(server)[-1]
    await delivered(bot, job_id_of(message))
    row = await bot.store.jobs.by_public_id(job_id_of(message))
    assert row is not None and row.delivery_error is None
    assert message.attachments[0].data == original.attachments[0].data
    return message


async def test_each_failure_kind_is_retried_and_posted_once(harness: BotHarness) -> None:
    server = harness.server
    bot = await harness.start(**FAST)
    original = await first_result(server, bot)
    faults: dict[str, Callable[[], None]] = {
        "503": lambda: server.fail_next("POST", CHANNEL_POST, status=503, times=2),
        # discord.py retries 500/502/504 itself once; three in a row are beyond it... and
        # cost it 1 + 3 s of sleeping, so one of each here and the 503s show our own retries.
        "500": lambda: server.fail_next("POST", CHANNEL_POST, status=500, times=1),
        "502": lambda: server.fail_next("POST", CHANNEL_POST, status=502, times=1),
        "504": lambda: server.fail_next("POST", CHANNEL_POST, status=504, times=1),
        # discord.py tries a 429 five times; the sixth answer decides.
        "429 beyond the library": lambda: server.fail_next(
            "POST", CHANNEL_POST, retry_after=0.01, times=5
        ),
        "timeout": lambda: server.delay_next("POST", CHANNEL_POST, seconds=3.0),
        "connection reset": lambda: server.reset_next("POST", CHANNEL_POST, times=2),
    }
    for kind, fault in faults.items():
        before = len(results(server))
        message = await reroll_through(server, bot, original, fault)
        assert len(results(server)) == before + 1, f"{kind}: posted more than once"
        assert message.message_reference is not None, f"{kind}: the reroll replies to its source"


async def test_a_503_on_the_followup_is_retried(harness: BotHarness) -> None:
    server = harness.server
    bot = await harness.start(**FAST)
    server.fail_next("POST", FOLLOWUP_POST, status=503, times=2)
    result = await first_result(server, bot)
    assert not server.rest.faults
    assert len(results(server)) == 1 and result.webhook_id is not None


async def test_a_followup_that_timed_out_after_it_was_posted_is_not_posted_again(
    harness: BotHarness,
) -> None:
    # Followups take no nonce: the bot finds the first attempt in the channel instead.
    server = harness.server
    bot = await harness.start(**FAST)
    server.delay_next("POST", FOLLOWUP_POST, seconds=FAST["delivery_timeout_s"] + 1.0)
    result = await first_result(server, bot)  # waits until the job is marked delivered
    assert not server.rest.faults, "the slow answer was not used"
    assert len(results(server)) == 1, "posted twice"
    row = await bot.store.jobs.by_public_id(job_id_of(result))
    assert row is not None and row.result_message_id == result.id
    # The reactions are added after the job is marked delivered and its status line removed.
    await wait_for(lambda: len(result.reactions) >= 3, what="the controls on the one result")


async def test_a_dm_that_timed_out_after_it_was_posted_is_not_posted_again(
    harness: BotHarness,
) -> None:
    # A private result whose interaction token expired goes by DM, with the job's nonce.
    server = harness.server
    bot = await harness.start(**FAST)
    bot.engine.scheduler.pause()
    record = await imagine_queued(server, server.alice, "a quiet fox", private=True)
    record.expire()
    server.delay_next("POST", CHANNEL_POST, seconds=FAST["delivery_timeout_s"] + 1.0)
    bot.engine.scheduler.resume()
    await wait_for(lambda: results(server), within_s=90, what="the DM")
    await delivered(bot, job_id_of(results(server)[0]))
    assert not server.rest.faults, "the slow answer was not used"
    assert len(results(server)) == 1, "sent twice"
    assert results(server)[0].guild_id is None, "not by DM"


async def test_undelivered_results_are_recorded_reposted_after_a_restart_and_shown(
    harness: BotHarness,
) -> None:
    server = harness.server
    bot = await harness.start(**FAST)
    original = await first_result(server, bot)
    server.fail_next("POST", CHANNEL_POST, status=503, times=1000)
    reroll = next(c for c in original.custom_ids() if c.startswith("flux:reroll:"))
    await server.click(server.alice, original, reroll)

    for _ in range(600):
        rows = (await bot.store.jobs.for_user(server.alice.id)).jobs
        if rows[0].delivery_error:
            break
        await asyncio.sleep(0.1)
    child = (await bot.store.jobs.for_user(server.alice.id)).jobs[0]
    assert child.parent_id is not None and child.delivered_at is None
    assert "503" in (child.delivery_error or "") and child.delivery_attempts >= 1
    assert [j.public_id for j in await bot.store.jobs.undelivered()] == [child.public_id]
    assert len(results(server)) == 1

    await harness.stop()
    server.rest.faults.clear()
    bot = await harness.start(**FAST)
    await wait_for(lambda: len(results(server)) == 2, within_s=60, what="the redelivery")
    assert job_id_of(results(server)[-1]) == child.public_id
    await delivered(bot, child.public_id)
    assert await bot.store.jobs.undelivered() == []

    # /show always gets it (here: again, on demand).
    shown = await answer(server, server.alice, "show", {"job_id": child.public_id})
    assert shown.messages[-1].attachments[0].data == original.attachments[0].data


async def test_a_retry_first_looks_for_what_the_failed_attempt_may_have_posted() -> None:
    policy = RetryPolicy(attempts=3, timeout_s=1.0, first_delay_s=0.0)
    tries: list[int] = []

    async def times_out() -> str:
        tries.append(1)
        raise TimeoutError

    async def found() -> str | None:
        return "the first post"

    assert await with_retries(times_out, policy, what="x", landed=found) == "the first post"
    assert len(tries) == 1

    async def nothing() -> str | None:
        return None

    async def broken() -> str | None:
        raise ConnectionResetError

    for look in (nothing, broken):  # not there, or the look-up fails: try again
        tries.clear()
        with pytest.raises(TimeoutError):
            await with_retries(times_out, policy, what="x", landed=look)
        assert len(tries) == policy.attempts
