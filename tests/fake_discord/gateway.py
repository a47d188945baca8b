"""Discord's gateway over WebSocket: HELLO, IDENTIFY/READY + GUILD_CREATE, heartbeats, dispatches.

Each IDENTIFY opens a session with its own sequence numbers; events are filtered by the session's
intents, and privileged intents are refused (fluxbot asks for none). Sessions are not kept for
RESUME: a client that tries is told its session is invalid and IDENTIFYs again, which Discord may
also do. discord.py 2.7 asks for `compress=zlib-stream` (or `zstd-stream` when the `zstandard`
package is installed); zlib-stream is implemented as Discord does it (one zlib context per
connection, each message flushed with Z_SYNC_FLUSH); for any other value the fake sends plain text
frames, which discord.py also accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .state import INTENT_GUILDS, PRIVILEGED_INTENTS, DiscordState

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_API_VERSION = 4012
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014

HEARTBEAT_INTERVAL_MS = 41_250
TRACE = ['["fake-discord-gateway"]']


class GatewayConnection:
    """One WebSocket; serialises sends so the zlib stream and the sequence stay in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self.lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        """Send one gateway message (dropped if the socket is already gone)."""
        text = json.dumps(payload)
        async with self.lock:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                if self._zlib is not None:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)


@dataclass(eq=False)
class GatewaySession:
    """One IDENTIFYed client: its intents and the sequence number of its last dispatch."""

    session_id: str
    intents: int
    connection: GatewayConnection
    seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wants(self, intent: int) -> bool:
        return intent == 0 or bool(self.intents & intent)

    async def dispatch(self, event: str, data: Any) -> None:
        async with self.lock:
            await self.send_locked(event, data)

    async def send_locked(self, event: str, data: Any) -> None:
        self.seq += 1
        await self.connection.send({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data})


class GatewayHub:
    """Serves `/gateway`, tracks sessions, and dispatches events to every matching session."""

    def __init__(self, state: DiscordState, *, token: str, public_url: str = "") -> None:
        self.state = state
        self.token = token
        self.public_url = public_url
        self.sessions: list[GatewaySession] = []
        self.connections: list[GatewayConnection] = []
        self.identify_count = 0

    async def dispatch(self, event: str, data: dict[str, Any], intent: int = 0) -> None:
        """Send a DISPATCH to every session whose intents cover `intent` (0: always)."""
        for session in list(self.sessions):
            if session.wants(intent):
                await session.dispatch(event, data)

    async def close_all(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(Exception):
                await connection.ws.close(code=1001, message=b"fake_discord stopping")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=5.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        connection = GatewayConnection(ws, request.query.get("compress"))
        self.connections.append(connection)
        session: GatewaySession | None = None
        try:
            if request.query.get("v") != "10" or request.query.get("encoding") != "json":
                await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"v=10&encoding=json")
                return ws
            hello = {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": TRACE}
            await connection.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    payload = json.loads(message.data)
                    op, data = payload["op"], payload.get("d")
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"Decode error")
                    break
                session = await self._on_message(connection, session, op, data)
                if ws.closed:
                    break
        finally:
            self.connections.remove(connection)
            if session is not None:
                self.sessions.remove(session)
            self.state.changes.notify()
        return ws

    async def _on_message(
        self, connection: GatewayConnection, session: GatewaySession | None, op: int, data: Any
    ) -> GatewaySession | None:
        ws = connection.ws
        if op == OP_HEARTBEAT:
            await connection.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY and session is not None:
            await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated")
        elif op == OP_IDENTIFY:
            return await self._identify(connection, data)
        elif op == OP_RESUME:
            await connection.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
        elif session is None:
            await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated")
        return session

    async def _identify(self, connection: GatewayConnection, data: Any) -> GatewaySession | None:
        ws = connection.ws
        if not isinstance(data, dict) or data.get("token") != self.token:
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s)")
            return None
        if intents & PRIVILEGED_INTENTS:
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s)")
            return None
        self.identify_count += 1
        session = GatewaySession(secrets.token_hex(16), intents, connection)
        async with session.lock:  # READY and the guilds go first, before any other event
            self.sessions.append(session)
            await session.send_locked("READY", self._ready_payload(session))
            if session.wants(INTENT_GUILDS):
                bot_id = str(self.state.bot.id)
                for guild in self.state.guilds.values():
                    data = guild.payload()
                    # Without GUILD_MEMBERS (privileged) Discord only includes the bot's member.
                    data["members"] = [m for m in data["members"] if m["user"]["id"] == bot_id]
                    await session.send_locked("GUILD_CREATE", data)
        self.state.changes.notify()
        return session

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        state = self.state
        return {
            "v": 10,
            "user": state.bot.me_payload(),
            "guilds": [{"id": str(g), "unavailable": True} for g in state.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.public_url,
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
            "_trace": TRACE,
        }
