"""The gateway on the wire, with a raw WebSocket client: ops, zlib-stream, intents, refusals."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord.multipart import ParsedBody

GUILDS = 1 << 0
MESSAGE_CONTENT = 1 << 15
DEFAULT_INTENTS = discord.Intents.default().value
ZLIB_QUERY = "?v=10&encoding=json&compress=zlib-stream"  # what discord.py 2.7 asks for


class RawGateway:
    """Just enough of a gateway client to look at exactly what the fake sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inflate = zlib.decompressobj()
        self.binary_frames = 0

    async def recv(self) -> dict[str, Any]:
        message = await self.ws.receive(timeout=2)
        if message.type is aiohttp.WSMsgType.BINARY:
            self.binary_frames += 1
            assert message.data.endswith(b"\x00\x00\xff\xff")  # Z_SYNC_FLUSH, as Discord does
            return json.loads(self.inflate.decompress(message.data))
        if message.type is aiohttp.WSMsgType.TEXT:
            return json.loads(message.data)
        raise ConnectionError(f"socket ended: {message.type} {message.data}")

    async def send(self, op: int, data: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": data}))

    async def identify(self, token: str, intents: int) -> dict[str, Any]:
        assert (await self.recv())["op"] == 10
        await self.send(2, {"token": token, "intents": intents, "properties": {}})
        ready = await self.recv()
        assert ready["t"] == "READY"
        return ready


@pytest.fixture
async def connect(fake: FakeDiscord) -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as session:

        async def open_gateway(query: str = ZLIB_QUERY) -> RawGateway:
            ws = await session.ws_connect(fake.gateway_url + query, autoclose=False)
            return RawGateway(ws)

        yield open_gateway


async def test_hello_identify_ready_and_guild_create(fake: FakeDiscord, connect: Any) -> None:
    gateway = await connect()
    hello = await gateway.recv()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41_250
    await gateway.send(1, None)
    assert (await gateway.recv())["op"] == 11
    await gateway.send(2, {"token": fake.token, "intents": DEFAULT_INTENTS, "properties": {}})

    ready = await gateway.recv()
    assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
    data = ready["d"]
    assert data["user"]["id"] == str(fake.bot_user.id) and data["user"]["bot"] is True
    assert data["resume_gateway_url"] == fake.gateway_url
    assert data["application"]["id"] == str(fake.application_id)
    assert data["guilds"] == [{"id": str(fake.guild.id), "unavailable": True}]
    guild = await gateway.recv()
    assert (guild["t"], guild["s"]) == ("GUILD_CREATE", 2)
    channels = {c["name"]: c for c in guild["d"]["channels"]}
    assert channels["general"]["nsfw"] is False and channels["nsfw-art"]["nsfw"] is True
    roles = {r["name"]: r for r in guild["d"]["roles"]}
    assert roles["Administrator"]["permissions"] == "8"
    # Without the GUILD_MEMBERS intent only the bot's own member comes with the guild.
    assert [m["user"]["id"] for m in guild["d"]["members"]] == [str(fake.bot_user.id)]
    assert gateway.binary_frames == 4


async def test_plain_text_frames_without_compression(fake: FakeDiscord, connect: Any) -> None:
    gateway = await connect("?v=10&encoding=json")
    await gateway.identify(fake.token, DEFAULT_INTENTS)
    assert gateway.binary_frames == 0


async def test_a_resume_is_answered_invalid_session(fake: FakeDiscord, connect: Any) -> None:
    gateway = await connect()
    assert (await gateway.recv())["op"] == 10
    await gateway.send(6, {"token": fake.token, "session_id": "gone", "seq": 1})
    assert await gateway.recv() == {"op": 9, "d": False, "s": None, "t": None}


async def test_intents_decide_what_is_dispatched(fake: FakeDiscord, connect: Any) -> None:
    fake.state.commands.overwrite([{"name": "imagine", "description": "d", "options": []}])
    gateway = await connect()
    await gateway.identify(fake.token, GUILDS)
    assert (await gateway.recv())["t"] == "GUILD_CREATE"
    body = ParsedBody({"content": "hi"})
    message = await fake.state.create_message(fake.channel, fake.bot_user, body)
    await fake.react(fake.alice, message, "🔁")
    record = await fake.slash(fake.alice, "imagine")

    interaction = await gateway.recv()  # the message and reaction were not sent
    assert interaction["t"] == "INTERACTION_CREATE"
    data = interaction["d"]
    assert data["id"] == str(record.id) and data["token"] == record.token
    assert data["attachment_size_limit"] == fake.attachment_size_limit
    assert data["member"]["user"]["id"] == str(fake.alice.id)
    assert int(data["member"]["permissions"]) & (1 << 11)  # SEND_MESSAGES
    assert data["channel"]["id"] == data["channel_id"] == str(fake.channel.id)


async def test_identify_is_refused_like_discord(fake: FakeDiscord, connect: Any) -> None:
    gateway = await connect()
    assert (await gateway.recv())["op"] == 10
    await gateway.send(2, {"token": "wrong", "intents": 0, "properties": {}})
    with pytest.raises(ConnectionError, match="4004"):
        await gateway.recv()

    gateway = await connect()  # fluxbot asks for no privileged intent; none is enabled
    assert (await gateway.recv())["op"] == 10
    await gateway.send(
        2, {"token": fake.token, "intents": GUILDS | MESSAGE_CONTENT, "properties": {}}
    )
    with pytest.raises(ConnectionError, match="4014"):
        await gateway.recv()
