"""The real discord.py client against the fake: what fluxbot's end-to-end tests rely on."""

from __future__ import annotations

import io

import discord
import pytest
from PIL import Image

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
    imagine = fake.command("imagine")
    assert imagine is not None
    assert [(o["name"], o["type"], o["required"]) for o in imagine["options"]] == [
        ("prompt", 3, True),
        ("seed", 4, False),
    ]
    assert fake.rest.unknown_routes == []


async def test_slash_defers_then_followup_carries_the_file_and_button(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "imagine", {"prompt": "a fox", "seed": 42})

    response = await record.wait_response(within_s=3)
    assert response.type == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE ("thinking…")
    [result] = await fake.wait_until(lambda: record.followups, what="the followup")
    assert result is record.original  # the first followup fills in the "thinking…" message
    assert result.content == "a fox (seed 42)"
    [attachment] = result.attachments
    assert attachment.filename == "result.png"
    assert attachment.content_type == "image/png"
    assert attachment.data == selftest_bot.image
    assert Image.open(io.BytesIO(attachment.data)).size == (64, 48)
    assert result.custom_ids() == ["selftest:again"]
    assert result.interaction_id == record.id
    await fake.wait_until(lambda: len(result.reactions) == 3, what="the bot's three reactions")
    assert list(result.reactions) == ["🔁", "🎲", "❌"]
    assert result.reactions["🔁"] == [fake.bot_user.id]
    assert fake.rest.unknown_routes == []


async def test_button_click_and_reaction_reach_the_bot(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    record = await fake.slash(fake.alice, "imagine", {"prompt": "a fox"})
    [result] = await fake.wait_until(lambda: record.followups, what="the followup")

    click = await fake.click(fake.bob, result, "selftest:again")
    reply = await fake.wait_until(lambda: click.original, what="the answer to the click")
    assert selftest_bot.clicks == [fake.bob.id]
    assert reply.content == "again, coming up" and reply.ephemeral
    assert click.payload["message"]["id"] == str(result.id)
    with pytest.raises(LookupError):
        await fake.click(fake.bob, result, "selftest:nothing")

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

    reply = await fake.wait_until(lambda: record.original, what="the answer")
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
    with pytest.raises(ValueError, match="required"):
        await fake.submit_modal(fake.alice, opened, {})
    submitted = await fake.submit_modal(fake.alice, opened, {"feedback:text": "lovely"})
    await fake.wait_until(lambda: submitted.original, what="the answer to the modal")
    assert selftest_bot.feedback == ["lovely"]


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
        nonce=7,
    )

    stored = fake.state.messages[sent.id]
    assert [a.data for a in stored.attachments] == images
    assert [(a.width, a.height) for a in stored.attachments] == [(16, 16), (32, 16)]
    assert stored.embeds[0]["title"] == "fox"
    assert stored.message_reference is not None
    assert stored.message_reference["message_id"] == str(first.id)
    assert sent.reference is not None and sent.reference.message_id == first.id
    assert await sent.attachments[1].read() == images[1]  # discord.py downloads from the fake

    edited = await sent.edit(content="results (edited)", attachments=[sent.attachments[0]])
    assert [a.filename for a in fake.state.messages[sent.id].attachments] == ["img0.png"]
    assert edited.content == "results (edited)"
    await first.delete()
    assert [m.id for m in fake.messages()] == [sent.id]


async def test_a_dm_found_by_user_id_carries_the_result_once_per_nonce(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    # fluxbot's path for a private result whose interaction token expired.
    user = await selftest_bot.bot.fetch_user(fake.alice.id)
    image = png_bytes(16, 16, "blue")

    async def send() -> discord.Message:
        file = discord.File(io.BytesIO(image), filename="result.png")
        return await user.send(embed=discord.Embed(title="fox"), file=file, nonce="job1")

    sent, again = await send(), await send()
    assert isinstance(sent.channel, discord.DMChannel) and sent.guild is None
    assert sent.channel.recipient is not None and sent.channel.recipient.id == fake.alice.id
    assert again.id == sent.id, "the enforced nonce returned the first message"
    [stored] = fake.messages()
    assert stored.guild_id is None and stored.embeds[0]["title"] == "fox"
    assert await sent.attachments[0].read() == image


async def test_over_limit_upload_is_rejected_like_discord(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    fake.attachment_size_limit = 1024
    channel = selftest_bot.bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 2048), filename="big.png"))

    assert caught.value.status == 413 and caught.value.code == 40005
    assert fake.messages() == []
    record = await fake.slash(fake.alice, "imagine", {"prompt": "tiny"})
    assert record.payload["attachment_size_limit"] == 1024


async def test_missing_permission_is_a_403_the_bot_can_handle(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    for role in (fake.guild.roles[fake.guild.id], fake.bot_role):
        role.permissions &= ~permissions.ATTACH_FILES
    channel = selftest_bot.bot.get_channel(fake.channel.id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send(file=discord.File(io.BytesIO(b"png"), filename="a.png"))
    assert caught.value.code == 50013
    await channel.send("text is still fine")


async def test_a_dropped_connection_identifies_again(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    # discord.py RESUMEs after an abnormal close; the fake keeps no session to resume, so it
    # answers INVALID_SESSION and the bot IDENTIFYs again.
    for connection in list(fake.gateway.connections):
        await connection.ws.close(code=4000)
    await fake.wait_until(lambda: fake.gateway.identify_count == 2, what="a second IDENTIFY")
    await fake.wait_ready()
    record = await fake.slash(fake.alice, "imagine", {"prompt": "still here"})
    await fake.wait_until(lambda: record.followups, what="the followup")


async def test_slash_refuses_what_a_discord_client_would_not_send(
    fake: FakeDiscord, selftest_bot: SelfTestBot
) -> None:
    with pytest.raises(LookupError):
        await fake.slash(fake.alice, "animate", {"prompt": "x"})
    with pytest.raises(ValueError, match="needs option"):
        await fake.slash(fake.alice, "imagine", {"seed": 1})
    with pytest.raises(ValueError, match="has no option"):
        await fake.slash(fake.alice, "imagine", {"prompt": "x", "steps": 1})
    with pytest.raises(TypeError):
        await fake.slash(fake.alice, "imagine", {"prompt": "x", "seed": "42"})
    with pytest.raises(TypeError):
        await fake.slash(fake.alice, "imagine", {"prompt": "x", "seed": True})
    with pytest.raises(TypeError):
        await fake.slash(fake.alice, "imagine", {"prompt": Upload("a.png", b"")})
