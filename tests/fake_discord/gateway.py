"""Discord's gateway over WebSocket: HELLO, IDENTIFY/READY, heartbeats, RESUME and dispatches.

Each IDENTIFY opens a session with its own sequence numbers and a buffer of sent events, so a
dropped connection can RESUME and get exactly the events it missed, as on Discord. Events are
filtered by the session's intents. discord.py 2.7 always asks for `compress=zlib-stream` (or
`zstd-stream` when the `zstandard` package is installed); zlib-stream is implemented as Discord does
it (one zlib context per connection, each message flushed with Z_SYNC_FLUSH); for any other value
the fake sends plain text frames, which discord.py also accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .models import FakeGuild
from .state import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    DiscordState,
)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_API_VERSION = 4012
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014

SESSION_BUFFER = 2000


@dataclass
class DispatchRecord:
    """One event the fake sent (or buffered) for a session."""

    session_id: str
    seq: int
    event: str
    data: dict[str, Any]


class GatewayConnection:
    """One WebSocket; serialises sends so the zlib stream stays in order."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, compress: str | None):
        self.request = request
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._lock = asyncio.Lock()
        self.dropped_by_server = False

    async def send(self, payload: dict[str, Any]) -> bool:
        """Send one gateway message; False if the socket is already gone."""
        text = json.dumps(payload)
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                if self._zlib is not None:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True


@dataclass(eq=False)
class GatewaySession:
    """What survives a dropped connection: id, intents, sequence and the replay buffer."""

    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SESSION_BUFFER))
    connection: GatewayConnection | None = None
    presence: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wants(self, intent: int) -> bool:
        return intent == 0 or bool(self.intents & intent)


class GatewayHub:
    """Serves `/gateway`, tracks sessions, and dispatches events to every matching session."""

    def __init__(
        self,
        state: DiscordState,
        *,
        token: str,
        heartbeat_interval_ms: int,
        allowed_privileged_intents: int,
        public_url: Callable[[], str],
    ) -> None:
        self.state = state
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_privileged_intents = allowed_privileged_intents
        self.public_url = public_url
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[GatewayConnection] = []
        self.dispatched: list[DispatchRecord] = []
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.close_codes: list[int | None] = []
        self.last_identify: dict[str, Any] | None = None

    # -------------------------------------------------------------------------------- queries

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.connection is not None]

    # ------------------------------------------------------------------------------ dispatching

    async def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        *,
        intent: int = 0,
        redact_content: bool = False,
    ) -> None:
        """Send a DISPATCH to every session whose intents cover `intent` (0: always)."""
        for session in list(self.sessions.values()):
            if not session.wants(intent):
                continue
            payload = data
            if redact_content and not session.intents & INTENT_MESSAGE_CONTENT:
                payload = copy.deepcopy(data)
                payload.update(content="", embeds=[], attachments=[], components=[])
                payload.pop("poll", None)
            await self._send_dispatch(session, event, payload)

    async def _send_dispatch(self, session: GatewaySession, event: str, data: Any) -> None:
        async with session.lock:
            await self._send_locked(session, event, data)

    async def _send_locked(self, session: GatewaySession, event: str, data: Any) -> None:
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        self.dispatched.append(DispatchRecord(session.session_id, session.seq, event, data))
        if session.connection is not None:
            await session.connection.send(frame)

    # ------------------------------------------------------------------------- test controls

    async def drop(self, code: int | None = CLOSE_UNKNOWN_ERROR) -> None:
        """Cut every live connection (close `code`, or abort the TCP stream when None)."""
        for session in self.live_sessions():
            connection = session.connection
            session.connection = None
            if connection is None:
                continue
            connection.dropped_by_server = True
            if code is None:
                transport = connection.request.transport
                if transport is not None:
                    transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await connection.ws.close(code=code, message=b"fake_discord drop")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; discord.py closes and RESUMEs."""
        for session in self.live_sessions():
            connection = session.connection
            if connection is not None:
                await connection.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unless resumable the session is gone (client re-IDENTIFYs)."""
        for session in self.live_sessions():
            connection = session.connection
            if not resumable:
                self.sessions.pop(session.session_id, None)
            if connection is not None:
                await connection.send(
                    {"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None}
                )

    async def close_all(self) -> None:
        for connection in list(self.connections):
            connection.dropped_by_server = True
            with contextlib.suppress(Exception):
                await connection.ws.close(code=1001, message=b"fake_discord stopping")

    # ------------------------------------------------------------------------------ websocket

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=5.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        connection = GatewayConnection(request, ws, request.query.get("compress"))
        self.connections.append(connection)
        session: GatewaySession | None = None
        try:
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=CLOSE_DECODE_ERROR, message=b"only encoding=json")
                return ws
            if request.query.get("v", "10") not in ("9", "10"):
                await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"Invalid API version")
                return ws
            await connection.send(
                {
                    "op": OP_HELLO,
                    "d": {
                        "heartbeat_interval": self.heartbeat_interval_ms,
                        "_trace": ['["fake-discord-gateway"]'],
                    },
                    "s": None,
                    "t": None,
                }
            )
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    payload = json.loads(message.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"Decode error")
                    break
                session = await self._on_message(connection, session, op, payload.get("d"))
                if ws.closed:
                    break
        finally:
            self.connections.remove(connection)
            self.close_codes.append(ws.close_code)
            if session is not None and session.connection is connection:
                session.connection = None
            client_ended = ws.close_code in (1000, 1001) and not connection.dropped_by_server
            if session is not None and client_ended:
                # Discord forgets a session the client closed with 1000/1001.
                self.sessions.pop(session.session_id, None)
            self.state.changes.notify()
        return ws

    async def _on_message(
        self,
        connection: GatewayConnection,
        session: GatewaySession | None,
        op: int,
        data: Any,
    ) -> GatewaySession | None:
        ws = connection.ws
        if op == OP_HEARTBEAT:
            self.heartbeat_count += 1
            await connection.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            return session
        if op in (OP_IDENTIFY, OP_RESUME):
            if session is not None:
                await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated")
                return session
            if not isinstance(data, dict) or data.get("token") != self.token:
                await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed")
                return None
            if op == OP_IDENTIFY:
                return await self._identify(connection, data)
            return await self._resume(connection, data)
        if session is None:
            await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated")
            return None
        if op == OP_PRESENCE_UPDATE:
            session.presence = data
        elif op == OP_REQUEST_GUILD_MEMBERS:
            await self._members_chunk(session, data or {})
        elif op != OP_VOICE_STATE_UPDATE:
            await ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"Unknown opcode")
        return session

    async def _identify(
        self, connection: GatewayConnection, data: dict[str, Any]
    ) -> GatewaySession | None:
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await connection.ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s)")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            await connection.ws.close(
                code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s)"
            )
            return None
        self.identify_count += 1
        self.last_identify = data
        session = GatewaySession(
            session_id=secrets.token_hex(16), intents=intents, shard=data.get("shard")
        )
        self.sessions[session.session_id] = session
        async with session.lock:
            await self._send_locked(session, "READY", self._ready_payload(session))
            if session.wants(INTENT_GUILDS):
                for guild in self.state.guilds.values():
                    guild_data = self._guild_payload(session, guild)
                    await self._send_locked(session, "GUILD_CREATE", guild_data)
            session.connection = connection
            for frame in session.buffer:
                await connection.send(frame)
        self.state.changes.notify()
        return session

    async def _resume(
        self, connection: GatewayConnection, data: dict[str, Any]
    ) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None:
            await connection.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        async with session.lock:
            if session.connection is not None:
                # A newer connection resumes the session: the old one is cut off.
                old = session.connection
                old.dropped_by_server = True
                session.connection = None
                with contextlib.suppress(Exception):
                    await old.ws.close(code=CLOSE_UNKNOWN_ERROR)
            last_seen = int(data.get("seq") or 0)
            for frame in list(session.buffer):
                if frame["s"] > last_seen:
                    await connection.send(frame)
            session.connection = connection
            await self._send_locked(session, "RESUMED", {"_trace": ['["fake-discord-gateway"]']})
        self.resume_count += 1
        self.state.changes.notify()
        return session

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        state = self.state
        data: dict[str, Any] = {
            "v": 10,
            "user": state.bot.me_payload(),
            "guilds": [{"id": str(g), "unavailable": True} for g in state.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.public_url(),
            "application": {"id": str(state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
            "_trace": ['["fake-discord-gateway"]'],
        }
        if session.shard is not None:
            data["shard"] = session.shard
        return data

    def _guild_payload(self, session: GatewaySession, guild: FakeGuild) -> dict[str, Any]:
        data = guild.payload()
        if not session.intents & INTENT_GUILD_MEMBERS:
            # Without GUILD_MEMBERS Discord only includes the bot's own member.
            bot_id = str(self.state.bot.id)
            data["members"] = [m for m in data["members"] if m["user"]["id"] == bot_id]
        return data

    async def _members_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        user_ids = {int(u) for u in (data.get("user_ids") or [])}
        query = (data.get("query") or "").lower()
        members = [
            m.payload()
            for m in guild.members.values()
            if (not user_ids or m.user.id in user_ids) and m.user.username.lower().startswith(query)
        ]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)
