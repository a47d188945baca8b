"""The REST side on the wire: error shapes, validation, limits, permissions, interaction rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from tests.fake_discord import FakeDiscord, permissions


@pytest.fixture
async def http(fake: FakeDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


def multipart(payload: dict[str, Any], files: list[tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps(payload))
    for index, (name, data) in enumerate(files):
        form.add_field(
            f"files[{index}]", data, filename=name, content_type="application/octet-stream"
        )
    return form


def imagine_synced(fake: FakeDiscord) -> None:
    fake.state.commands.overwrite([{"name": "imagine", "description": "d", "options": []}])


async def test_unknown_routes_answer_discords_404_and_are_recorded(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake.api_base}/guilds/1/audit-logs") as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"message": "404: Not Found", "code": 0}
    async with http.put(f"{fake.api_base}/users/@me") as response:
        assert response.status == 405
    assert [(r.method, r.path) for r in fake.rest.unknown_routes] == [
        ("GET", "/api/v10/guilds/1/audit-logs"),
        ("PUT", "/api/v10/users/@me"),
    ]


async def test_bot_routes_need_the_token(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{fake.api_base}/users/@me") as response,
    ):
        assert response.status == 401
        assert (await response.json())["message"] == "401: Unauthorized"


async def test_message_limits_answer_invalid_form_body(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    async with http.post(url, json={"content": "x" * 2001}) as response:
        body = await response.json()
    assert response.status == 400 and body["code"] == 50035
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"

    def button(custom_id: str) -> dict[str, Any]:
        return {"type": 2, "style": 1, "label": "b", "custom_id": custom_id}

    rows = [{"type": 1, "components": [button(f"c{i}")]} for i in range(6)]
    async with http.post(url, json={"content": "hi", "components": rows}) as response:
        assert (await response.json())["errors"]["components"]["_errors"]
    rows = [{"type": 1, "components": [button("x" * 101), button("b"), button("b")]}]
    async with http.post(url, json={"content": "hi", "components": rows}) as response:
        buttons = (await response.json())["errors"]["components"]["0"]["components"]
    assert set(buttons) == {"0", "2"}  # custom_id too long; custom_id duplicated

    embed = {"title": "t" * 257, "description": "d" * 4097}
    async with http.post(url, json={"embeds": [embed]}) as response:
        assert set((await response.json())["errors"]["embeds"]["0"]) == {"title", "description"}

    async with http.post(url, json={"content": ""}) as response:
        assert (await response.json())["code"] == 50006

    files = [(f"{i}.png", b"png") for i in range(11)]
    async with http.post(url, data=multipart({"content": "many"}, files)) as response:
        assert (await response.json())["errors"]["attachments"]
    assert fake.messages() == []


async def test_upload_over_the_limit_is_413_and_stores_nothing(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    fake.attachment_size_limit = 4096
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    form = multipart({"content": "big"}, [("small.png", b"s" * 10), ("big.png", b"b" * 5000)])
    async with http.post(url, data=form) as response:
        assert response.status == 413
        assert await response.json() == {"message": "Request entity too large", "code": 40005}
    assert fake.messages() == []
    form = multipart({"content": "fits"}, [("ok.png", b"o" * 4096)])
    async with http.post(url, data=form) as response:
        assert response.status == 200
        assert (await response.json())["attachments"][0]["size"] == 4096


async def test_reactions_take_the_emoji_character_not_a_shortcode(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    async with http.post(url, json={"content": "hello"}) as response:
        message_id = (await response.json())["id"]
    base = f"{url}/{message_id}/reactions"
    async with http.put(f"{base}/%3Arepeat%3A/@me") as response:
        assert response.status == 400 and (await response.json())["code"] == 10014
    async with http.put(f"{base}/%F0%9F%94%81/@me") as response:
        assert response.status == 204
    assert fake.messages()[0].reactions == {"🔁": [fake.bot_user.id]}


async def test_the_bot_needs_its_permissions_in_the_channel(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    for role in (fake.guild.roles[fake.guild.id], fake.bot_role):
        role.permissions &= ~permissions.ATTACH_FILES
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    async with http.post(url, data=multipart({"content": "a"}, [("a.png", b"a")])) as response:
        assert response.status == 403 and (await response.json())["code"] == 50013
    async with http.post(url, json={"content": "text is still fine"}) as response:
        assert response.status == 200
    for role in (fake.guild.roles[fake.guild.id], fake.bot_role):
        role.permissions &= ~permissions.VIEW_CHANNEL
    async with http.post(url, json={"content": "unseen"}) as response:
        assert response.status == 403 and (await response.json())["code"] == 50001


async def test_fail_next_injects_errors_and_rate_limits(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    fake.fail_next("POST", r"/channels/\d+/messages$", status=503, times=1)
    fake.fail_next("GET", "/users/@me", retry_after=0.25)
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    async with http.post(url, json={"content": "one"}) as response:
        assert response.status == 503
    async with http.post(url, json={"content": "two"}) as response:
        assert response.status == 200
    async with http.get(f"{fake.api_base}/users/@me") as response:
        assert response.status == 429 and response.headers["Via"]
        assert (await response.json())["retry_after"] == 0.25


async def test_interaction_ack_rules(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    # Straight to the interaction service: no bot is connected, the test answers by hand.
    imagine_synced(fake)
    record = await fake.interactions.slash(fake.alice, "imagine", {}, fake.channel)
    callback = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    webhook = f"{fake.api_base}/webhooks/{fake.application_id}/{record.token}"
    async with http.post(f"{webhook}?wait=1", json={"content": "too early"}) as response:
        assert (await response.json())["code"] == 10015
    async with http.post(callback, json={"type": 7, "data": {"content": "no"}}) as response:
        assert (await response.json())["code"] == 50035  # UPDATE_MESSAGE needs a component
    async with http.post(f"{callback}?with_response=1", json={"type": 5}) as response:
        body = await response.json()
    assert body["interaction"]["response_message_loading"] is True
    assert body["resource"]["message"]["flags"] == 128
    async with http.post(callback, json={"type": 4, "data": {"content": "again"}}) as response:
        assert (await response.json())["code"] == 40060

    async with http.patch(f"{webhook}/messages/@original", json={"content": "done"}) as response:
        assert (await response.json())["content"] == "done"
    assert record.original is not None and not record.original.loading
    async with http.post(webhook, json={"content": "no wait"}) as response:
        assert response.status == 204
    assert [m.content for m in record.messages] == ["done", "no wait"]

    record.expire()
    async with http.post(f"{webhook}?wait=1", json={"content": "late"}) as response:
        assert response.status == 401 and (await response.json())["code"] == 50027


async def test_autocomplete_answers_are_held_to_discords_limits(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    fake.state.commands.overwrite(
        [
            {
                "name": "styles",
                "description": "d",
                "options": [{"name": "name", "description": "d", "type": 3, "autocomplete": True}],
            }
        ]
    )
    for choices, error in [
        ([{"name": str(i), "value": str(i)} for i in range(26)], "_errors"),
        ([{"name": "x" * 101, "value": "x"}], "0"),
    ]:
        record = await fake.interactions.autocomplete(
            fake.alice, "styles", {"name": ""}, "name", fake.channel
        )
        callback = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
        answer = {"type": 8, "data": {"choices": choices}}
        async with http.post(callback, json=answer) as response:
            assert error in (await response.json())["errors"]["data"]["choices"]


async def test_late_acknowledgement_is_an_unknown_interaction(
    http: aiohttp.ClientSession,
) -> None:
    slow = FakeDiscord(ack_timeout=0.0)
    await slow.start()
    try:
        imagine_synced(slow)
        record = await slow.interactions.slash(slow.alice, "imagine", {}, slow.channel)
        callback = f"{slow.api_base}/interactions/{record.id}/{record.token}/callback"
        async with http.post(callback, json={"type": 5}) as response:
            assert response.status == 404 and (await response.json())["code"] == 10062
    finally:
        await slow.stop()


async def test_command_sync_validates_like_discord(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.api_base}/applications/{fake.application_id}/commands"
    too_many = [{"type": 3, "name": f"o{i}", "description": "d"} for i in range(26)]
    bad = [{"name": "Imagine", "description": "", "options": too_many}]
    async with http.put(url, json=bad) as response:
        errors = (await response.json())["errors"]["0"]
    assert set(errors) == {"name", "description", "options"}
    order = [
        {"type": 3, "name": "seed", "description": "d"},
        {"type": 3, "name": "prompt", "description": "d", "required": True},
    ]
    async with http.put(url, json=[{"name": "a", "description": "d", "options": order}]) as r:
        assert "required" in (await r.json())["errors"]["0"]["options"]["1"]
    good = [{"name": "imagine", "description": "Make a picture"}]
    async with http.put(url, json=good) as response:
        [stored] = await response.json()
    async with http.put(url, json=good) as response:
        [again] = await response.json()
    assert stored["id"] == again["id"] and stored["application_id"] == str(fake.application_id)
    assert fake.command("imagine") == again


async def test_an_enforced_nonce_returns_the_channel_message_sent_minutes_before(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    post = {"content": "result", "nonce": "flux1", "enforce_nonce": True}
    async with http.post(url, json=post) as first, http.post(url, json=post) as again:
        assert (await first.json())["id"] == (await again.json())["id"]
    async with http.post(url, json={**post, "enforce_nonce": False}) as unenforced:
        assert (await unenforced.json())["id"] != (await first.json())["id"]
    # Discord checks the nonce over the past few minutes only.
    for message in fake.messages():
        message.created_at -= timedelta(minutes=10)
    async with http.post(url, json=post) as later:
        assert (await later.json())["id"] != (await first.json())["id"]
    assert len(fake.messages()) == 3

    # Executing a webhook (an interaction's followup) takes no nonce: each call posts.
    commands = f"{fake.api_base}/applications/{fake.application_id}/commands"
    prompt = {"type": 3, "name": "prompt", "description": "What", "required": True}
    imagine = {"name": "imagine", "description": "Imagine", "options": [prompt]}
    async with http.put(commands, json=[imagine]):
        pass
    record = await fake.interactions.slash(fake.alice, "imagine", {"prompt": "x"}, fake.channel)
    callback = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    webhook = f"{fake.api_base}/webhooks/{fake.application_id}/{record.token}?wait=1"
    async with http.post(callback, json={"type": 4, "data": {"content": "ok"}}):
        pass
    async with http.post(webhook, json=post) as one, http.post(webhook, json=post) as two:
        assert (await one.json())["id"] != (await two.json())["id"]


async def test_the_bot_opens_a_dm_and_posts_into_it_like_a_channel(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    opened = f"{fake.api_base}/users/@me/channels"
    async with http.post(opened, json={"recipient_id": str(fake.alice.id)}) as response:
        dm = await response.json()
    async with http.post(opened, json={"recipient_id": str(fake.alice.id)}) as again:
        assert (await again.json())["id"] == dm["id"], "one DM channel per user"
    assert dm["type"] == 1 and "guild_id" not in dm
    assert [u["id"] for u in dm["recipients"]] == [str(fake.alice.id)]
    async with http.post(opened, json={"recipient_id": "1"}) as unknown:
        assert unknown.status == 404 and (await unknown.json())["code"] == 10013
    async with http.get(f"{fake.api_base}/users/{fake.alice.id}") as user:
        assert (await user.json())["username"] == "alice"

    url = f"{fake.api_base}/channels/{dm['id']}/messages"
    post = {"content": "result", "nonce": "flux1", "enforce_nonce": True, "flags": 1 << 6}
    async with http.post(url, json=post) as first, http.post(url, json=post) as again:
        sent = await first.json()
        assert (await again.json())["id"] == sent["id"], "the enforced nonce holds in a DM"
    assert "guild_id" not in sent and sent["flags"] == 0, "no ephemeral messages in a DM"
    [stored] = fake.messages()
    assert stored.guild_id is None and stored.channel_id == int(dm["id"])

    # Discord refuses to DM a user who shares no server with the bot.
    stranger = fake.state.add_user("stranger")
    async with http.post(opened, json={"recipient_id": str(stranger.id)}) as response:
        url = f"{fake.api_base}/channels/{(await response.json())['id']}/messages"
    async with http.post(url, json={"content": "hi"}) as refused:
        assert refused.status == 403 and (await refused.json())["code"] == 50007
