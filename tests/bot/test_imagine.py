"""/imagine end to end: slash command to posted PNG, controls, errors."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from PIL import Image

from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import BotHarness, imagine_queued, results, said, wait_for


async def test_imagine_posts_a_png_with_its_seed(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    record = await server.slash(
        server.alice, "imagine", {"prompt": "a red fox --ar 1:1", "seed": 42, "steps": 2}
    )
    result = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    png = result.attachments[0].data
    params = read_parameters(png)
    assert params["seed"] == 42 and params["prompt"] == "a red fox"
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1024, 1024)
    embed = result.embeds[0]
    assert any(f["name"] == "Seed" and f["value"] == "42" for f in embed["fields"])
    assert record.deferred
    await wait_for(lambda: len(result.reactions) >= 3, what="control reactions")
    # The status message's id came with the defer's answer: no round trip to ask for it.
    asked = [r for r in server.requests if r.method == "GET" and r.path.endswith("/@original")]
    assert asked == [], [r.path for r in asked]


async def _imagine(harness: BotHarness, user, **options):  # type: ignore[no-untyped-def]
    server = harness.server
    before = {m.id for m in results(server)}
    await server.slash(user, "imagine", {"steps": 1, **options})
    return await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id not in before, within_s=60
    )


def _seed_of(message) -> int:  # type: ignore[no-untyped-def]
    return read_parameters(message.attachments[0].data)["seed"]


async def test_reroll_reaction_gives_identical_pixels(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    original = await _imagine(harness, server.alice, prompt="a lighthouse", seed=7)
    await wait_for(lambda: len(original.reactions) >= 3, what="control reactions")
    await server.react(server.alice, original, "🔁")
    reroll = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id != original.id, within_s=60
    )
    assert reroll.message_reference and int(reroll.message_reference["message_id"]) == original.id
    assert reroll.attachments[0].data == original.attachments[0].data
    store = harness.bot.store
    parent = await job_of(harness, original)
    child = await job_of(harness, reroll)
    assert child.parent_id == parent.id and child.kind == "reroll"
    assert await store.images.hashes(child.id) == await store.images.hashes(parent.id)


async def test_new_seed_button_makes_a_different_image(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    original = await _imagine(harness, server.alice, prompt="a lighthouse", seed=7)
    job = await job_of(harness, original)
    click = await server.click(server.bob, original, f"flux:new:{job.public_id}")
    variation = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id != original.id, within_s=60
    )
    assert _seed_of(variation) != 7
    assert variation.attachments[0].data != original.attachments[0].data
    # The click's answer is sent after the job is queued; the job may finish first.
    await wait_for(lambda: click.followups, what="the button's answer")
    assert click.ephemeral and "New seed" in click.followups[0].content


async def test_cancel_reaction_by_owner_deletes_and_by_others_is_ignored(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fluxbot")
    await harness.start()
    server = harness.server
    original = await _imagine(harness, server.alice, prompt="a teapot", seed=3)
    store = harness.bot.store
    job = await job_of(harness, original)
    # An emoji that is no control is dropped before the handler awaits anything, so once bob's
    # ❌ (sent after it) has been refused, both reactions have been handled.
    await server.react(server.alice, original, "🙂")
    await server.react(server.bob, original, "❌")
    refusal = f"reaction cancel on job {job.public_id} refused"
    await wait_for(lambda: refusal in caplog.text, what="bob's ❌ to be refused")
    assert not original.deleted and await store.jobs.get(job.id) is not None
    await server.react(server.alice, original, "❌")
    await wait_for(lambda: original.deleted, what="the result to be deleted")
    assert await wait_for_none(lambda: store.jobs.get(job.id))


async def wait_for_none(fetch) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if await fetch() is None:
            return True
        await asyncio.sleep(0.05)
    return False


async def job_of(harness: BotHarness, message):  # type: ignore[no-untyped-def]
    """The stored job of a posted result (its message id is saved just after posting)."""
    for _ in range(100):
        job = await harness.bot.store.jobs.by_message_id(message.id)
        if job is not None and job.result_message_id == message.id:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the result message was never linked to its job")


async def test_cancel_a_queued_job(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    bot.engine.scheduler.pause()
    record = await imagine_queued(server, server.alice, "a queued fox")
    job = await bot.store.jobs.by_message_id(record.original.id)
    await server.react(server.alice, record.original, "❌")
    await wait_for(lambda: "cancelled" in record.original.content, what="cancelled status")
    assert (await bot.store.jobs.get(job.id)).status == "cancelled"


async def test_bad_options_get_an_ephemeral_error_and_queue_nothing(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    record = await server.slash(server.alice, "imagine", {"prompt": "a cat --seed -5"})
    answer = await said(record)
    text = answer.content
    assert "seed" in text and "4294967295" in text and answer.ephemeral
    record = await server.slash(server.alice, "imagine", {"prompt": "a cat --ar 5:4"})
    assert "16:9" in (await said(record)).content
    assert (await bot.store.jobs.for_user(server.alice.id)).total == 0


async def test_oversized_upload_is_reencoded(harness: BotHarness) -> None:
    server = harness.server
    server.attachment_size_limit = 2_000_000
    await harness.start()
    result = await _imagine(harness, server.alice, prompt="static noise", seed=1)
    attachment = result.attachments[0]
    assert len(attachment.data) <= 2_000_000
    assert attachment.filename.endswith((".webp", ".jpg"))
    assert "re-encoded" in result.embeds[0]["description"]


async def test_a_result_after_the_token_expired_goes_to_the_channel(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    bot.engine.scheduler.pause()
    record = await imagine_queued(server, server.alice, "a slow fox")
    record.expire()  # as if 15 minutes had passed
    bot.engine.scheduler.resume()
    result = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    assert result.interaction_id is None and result.webhook_id is None
    assert f"<@{server.alice.id}>" in result.content


async def test_the_policy_is_stricter_outside_nsfw_channels(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    refused = await server.slash(server.alice, "imagine", {"prompt": "a nude portrait"})
    refusal = await said(refused)
    assert refusal.ephemeral and "🚫" in refusal.content
    allowed = await server.slash(
        server.alice,
        "imagine",
        {"prompt": "a nude portrait", "steps": 1},
        channel=server.nsfw_channel,
    )
    await wait_for(lambda: allowed.original and "`" in allowed.original.content)
    never = await server.slash(
        server.alice, "imagine", {"prompt": "a nude child"}, channel=server.nsfw_channel
    )
    assert "🚫" in (await said(never)).content
    assert (await bot.store.jobs.for_user(server.alice.id)).total == 1
