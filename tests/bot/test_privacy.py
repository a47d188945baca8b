"""Privacy: private results stay with their owner (controls included, children too), /show
respects privacy and age restriction, /animate honours `private` and the user's default."""

from __future__ import annotations

from tests.bot.conftest import BotHarness, answer, two_servers, wait_for
from tests.fake_discord.models import StoredMessage
from tests.fake_discord.server import FakeDiscord


def finished(server: FakeDiscord) -> list[StoredMessage]:
    return [m for m in server.messages() if m.attachments and m.embeds]


async def result_of(server: FakeDiscord, before: int, within_s: float = 90) -> StoredMessage:
    await wait_for(lambda: len(finished(server)) > before, within_s=within_s, what="a result")
    return finished(server)[-1]


def job_id_of(message: StoredMessage) -> str:
    return str(message.embeds[0]["fields"][-1]["value"]).strip("`")


async def test_private_results_keep_their_controls_and_their_privacy(
    harness: BotHarness,
) -> None:
    w = two_servers(harness.server)
    server = w.server
    bot = await harness.start()
    record = await server.slash(
        w.author, "imagine", {"prompt": "a secret fox", "steps": 1, "private": True}
    )
    result = await result_of(server, 0)
    assert result.ephemeral, "a private result is ephemeral"
    controls = {c.split(":")[1] for c in result.custom_ids()}
    assert {"reroll", "new", "cancel", "img"} <= controls, "private results get their controls too"
    assert record.ephemeral
    job_id = job_id_of(result)
    row = await bot.store.jobs.by_public_id(job_id)
    assert row is not None and row.private

    refused = await answer(server, w.member, "show", {"job_id": job_id})
    assert "private" in refused.messages[-1].content
    elsewhere = await answer(server, w.manager, "show", {"job_id": job_id}, channel=w.channel_b)
    assert "private" in elsewhere.messages[-1].content, "a manager of A has no power in B"
    count = len(finished(server))
    shown = await answer(server, w.manager, "show", {"job_id": job_id})
    assert len(finished(server)) == count + 1 and finished(server)[-1].ephemeral
    assert shown.ephemeral

    # 🔁 on the private result: the child is private too, and never posted publicly.
    before = len(finished(server))
    reroll = next(c for c in result.custom_ids() if c.startswith("flux:reroll:"))
    await server.click(w.author, result, reroll)
    child_message = await result_of(server, before)
    assert child_message.ephemeral
    child = await bot.store.jobs.by_public_id(job_id_of(child_message))
    assert child is not None and child.private and child.parent_id == row.id
    assert child_message.attachments[0].data == result.attachments[0].data
    assert not [m for m in server.messages(include_ephemeral=False) if m.attachments]

    # Someone else cannot reuse it through a forged press either.
    before_jobs = (await bot.store.jobs.for_user(w.member.id)).total
    forged = await server.click(w.member, result, reroll)
    await wait_for(lambda: any("private" in m.content for m in forged.messages), what="the refusal")
    assert (await bot.store.jobs.for_user(w.member.id)).total == before_jobs


async def test_animate_honours_private_and_the_users_default(harness: BotHarness) -> None:
    server = harness.server
    bot = await harness.start()
    await answer(server, server.alice, "settings", {"private": True})
    await server.slash(server.alice, "animate", {"prompt": "a turning wheel", "frames": 2})
    result = await result_of(server, 0, within_s=120)
    assert result.ephemeral and result.attachments[0].filename.endswith(".gif")
    assert (await bot.store.jobs.by_public_id(job_id_of(result))).private  # type: ignore[union-attr]
    await server.slash(
        server.alice, "animate", {"prompt": "a public wheel", "frames": 2, "private": False}
    )
    public = await result_of(server, 1, within_s=120)
    assert not public.ephemeral


async def test_age_restricted_jobs_show_only_in_age_restricted_channels(
    harness: BotHarness,
) -> None:
    server = harness.server
    bot = await harness.start()
    await server.slash(
        server.bob, "imagine", {"prompt": "moody art", "steps": 1}, channel=server.nsfw_channel
    )
    result = await result_of(server, 0)
    job_id = job_id_of(result)
    row = await bot.store.jobs.by_public_id(job_id)
    assert row is not None and row.age_restricted and not row.private
    refused = await answer(server, server.bob, "show", {"job_id": job_id})
    assert "age-restricted" in refused.messages[-1].content
    assert len(finished(server)) == 1
    shown = await answer(
        server, server.alice, "show", {"job_id": job_id}, channel=server.nsfw_channel
    )
    assert len(finished(server)) == 2 and not shown.ephemeral
