"""The real discord.py client against the fake: what fluxbot's end-to-end tests will rely on."""

from __future__ import annotations

import asyncio
import io

import discord
import pytest

from tests.fake_discord import FakeDiscord, Upload, permissions

from .harness import SelfTestBot, png_bytes


async def test_bot_logs_in_becomes_ready_and_syncs_its_commands(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    bot = selftest_bot.bot
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None
    general = guild.get_channel(fake.channel.id)
    nsfw = guild.get_channel(fake.nsfw_channel.id)
    assert isinstance(general, discord.TextChannel) and not general.nsfw
    assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
    assert guild.me.guild_permissions.attach_files
    assert fake.gateway.last_identify is not None
    assert fake.gateway.last_identify["intents"] == discord.Intents.default().value
    imagine = fake.command("imagine")
    assert imagine is not None
    assert [(o["name"], o["type"], o["required"]) for o in imagine["options"]] == [
        ("prompt", 3, True),
        ("seed", 4, False),
    ]
    assert fake.unknown_routes == []


async def test_slash_defers_then_followup_carries_the_file_and_button(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "imagine", {"prompt": "a fox", "seed": 42})

    response = await record.wait_response(within_s=3)
    assert response.type == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking…")
    [result] = await record.wait_followups()
    assert result is record.original  # the first followup fills in the "thinking…" message
    assert result.content == "a fox (seed 42)"
    [attachment] = result.attachments
    assert attachment.filename == "result.png"
    assert attachment.content_type == "image/png"
    assert attachment.data == selftest_bot.image
    assert attachment.image().size == (64, 48)
    assert result.custom_ids() == ["selftest:again"]
    assert result.interaction_id == record.id
    await fake.wait_until(lambda: len(result.reactions) == 3, what="the bot's three reactions")
    assert list(result.reactions) == ["🔁", "🎲", "❌"]
    assert result.reaction_users("🔁") == [fake.bot_user.id]
    assert fake.unknown_routes == []


async def test_button_click_and_reaction_reach_the_bot(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "imagine", {"prompt": "a fox"})
    [result] = await record.wait_followups()

    click = await fake.click(fake.bob, result, "selftest:again")
    reply = await click.wait_original()
    assert selftest_bot.clicks == [fake.bob.id]
    assert reply.content == "again, coming up" and reply.ephemeral
    assert click.payload["message"]["id"] == str(result.id)

    await fake.react(fake.alice, result, "🔁")
    await fake.wait_until(lambda: selftest_bot.reactions, what="on_raw_reaction_add")
    [event] = selftest_bot.reactions
    assert event.user_id == fake.alice.id and event.message_id == result.id
    assert str(event.emoji) == "🔁"
    assert event.member is not None and event.member.id == fake.alice.id
    assert event.message_author_id == fake.bot_user.id


async def test_subcommand_with_a_user_option_resolves_to_a_member(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "settings show", {"user": fake.bob})

    reply = await record.wait_original()
    [shown] = selftest_bot.shown
    assert isinstance(shown, discord.Member) and shown.id == fake.bob.id
    assert reply.content == f"settings of <@{fake.bob.id}>"
    assert record.payload["data"]["options"][0]["type"] == 1  # the subcommand wraps the option


async def test_autocomplete_and_modal_round_trips(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    await selftest_bot.bot.tree.sync()
    await fake.wait_for_commands("style", "feedback")
    suggest = await fake.autocomplete(fake.alice, "style", {"name": "an"}, focused="name")
    await suggest.wait_response()
    assert [c["value"] for c in suggest.choices or []] == ["anime", "analog film"]

    opened = await fake.slash(fake.alice, "feedback")
    await opened.wait_response()
    assert opened.modal is not None and opened.modal["title"] == "Feedback"
    submitted = await fake.submit_modal(fake.alice, opened, {"feedback:text": "lovely"})
    await submitted.wait_original()
    assert selftest_bot.feedback == ["lovely"]


async def test_direct_messages_both_ways(fake: FakeDiscord, selftest_bot: SelfTestBot) -> None:
    dm = fake.dm_channel(fake.alice)
    record = await fake.slash(fake.alice, "settings show", {"user": fake.alice}, channel=dm)
    reply = await record.wait_original()
    assert reply.channel_id == dm.id and reply.guild_id is None
    assert "member" not in record.payload and record.payload["user"]["id"] == str(fake.alice.id)
    [shown] = selftest_bot.shown
    assert not isinstance(shown, discord.Member) and shown.id == fake.alice.id

    bob = await selftest_bot.bot.fetch_user(fake.bob.id)
    sent = await bob.send("psst")
    stored = fake.message(sent.id)
    assert stored.channel_id == fake.dm_channel(fake.bob).id and stored.content == "psst"


async def test_channel_messages_with_files_embeds_and_replies(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    channel = selftest_bot.bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("first")
    images = [png_bytes(16, 16, "blue"), png_bytes(32, 16, "green")]
    sent = await channel.send(
        "results",
        files=[discord.File(io.BytesIO(b), filename=f"img{i}.png") for i, b in enumerate(images)],
        embed=discord.Embed(title="fox", description="seed 42"),
        reference=first,
        allowed_mentions=discord.AllowedMentions.none(),
    )

    stored = fake.message(sent.id)
    assert [a.data for a in stored.attachments] == images
    assert [(a.width, a.height) for a in stored.attachments] == [(16, 16), (32, 16)]
    assert stored.embeds[0]["title"] == "fox"
    assert stored.message_reference is not None
    assert stored.message_reference["message_id"] == str(first.id)
    assert sent.reference is not None and sent.reference.message_id == first.id
    assert await sent.attachments[1].read() == images[1]  # discord.py downloads from the fake

    edited = await sent.edit(content="results (edited)", attachments=[sent.attachments[0]])
    assert [a.filename for a in fake.message(sent.id).attachments] == ["img0.png"]
    assert edited.content == "results (edited)"
    await first.delete()
    assert [m.id for m in fake.messages(fake.channel)] == [sent.id]


async def test_over_limit_upload_is_rejected_like_discord(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    fake.attachment_size_limit = 1024
    channel = selftest_bot.bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 2048), filename="big.png"))

    assert caught.value.status == 413 and caught.value.code == 40005
    assert fake.messages(fake.channel) == []
    record = await fake.slash(fake.alice, "imagine", {"prompt": "tiny"})
    assert record.payload["attachment_size_limit"] == 1024


async def test_missing_permission_is_a_403_the_bot_can_handle(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    locked = await fake.add_channel("no-files", bot_denied=permissions.ATTACH_FILES)
    await fake.wait_until(lambda: selftest_bot.bot.get_channel(locked.id), what="CHANNEL_CREATE")
    channel = selftest_bot.bot.get_channel(locked.id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send(file=discord.File(io.BytesIO(b"png"), filename="a.png"))
    assert caught.value.code == 50013
    await channel.send("text is still fine")


async def test_dropped_connection_resumes_and_replays_missed_events(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "imagine", {"prompt": "a fox"})
    [result] = await record.wait_followups()

    await fake.drop_connection()
    await fake.react(fake.bob, result, "🎲")  # sent while the bot is disconnected

    await asyncio.wait_for(selftest_bot.resumed.wait(), 5)
    await fake.wait_until(lambda: selftest_bot.reactions, what="the replayed reaction")
    assert [(e.user_id, str(e.emoji)) for e in selftest_bot.reactions] == [(fake.bob.id, "🎲")]
    assert fake.gateway.identify_count == 1 and fake.gateway.resume_count == 1
    again = await fake.slash(fake.alice, "imagine", {"prompt": "after resume"})
    await again.wait_followups()


async def test_invalidated_session_identifies_again(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    await fake.invalidate_session(resumable=False)
    await fake.wait_until(lambda: fake.gateway.identify_count == 2, what="a second IDENTIFY")
    await fake.wait_ready()
    record = await fake.slash(fake.alice, "imagine", {"prompt": "still here"})
    await record.wait_followups()


async def test_slash_refuses_what_a_discord_client_would_not_send(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    with pytest.raises(LookupError):
        await fake.slash(fake.alice, "animate", {"prompt": "x"})
    with pytest.raises(ValueError, match="needs option"):
        await fake.slash(fake.alice, "imagine", {"seed": 1})
    with pytest.raises(TypeError):
        await fake.slash(fake.alice, "imagine", {"prompt": "x", "seed": "42"})
    with pytest.raises(TypeError):
        await fake.slash(fake.alice, "imagine", {"prompt": Upload("a.png", b"")})
