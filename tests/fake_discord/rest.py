"""Discord's REST API (the part a bot uses), as aiohttp routes under `/api/v10`.

Every request is logged; routes the fake does not know answer 404 in Discord's error shape and are
kept in `unknown_routes`, so a test can assert the bot called nothing unexpected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import errors, permissions
from .errors import DiscordError
from .interactions import InteractionRecord
from .models import FakeChannel, StoredMessage
from .multipart import ParsedBody, loads, parse_body
from .oauth import FakeOAuth
from .responses import ResponseService
from .state import DiscordState

API_PREFIX = "/api/v10"
READABLE = permissions.VIEW_CHANNEL | permissions.READ_MESSAGE_HISTORY
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

APP_FLAG_COMMAND_BADGE = 1 << 23  # no privileged intent is enabled for the fake's bot


@dataclass
class RecordedRequest:
    """One REST call as the fake saw it (payload is the JSON or `payload_json` part)."""

    method: str
    path: str
    route: str | None
    status: int = 0
    payload: Any = None
    files: list[tuple[str, int]] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)
    done_at: float | None = None  # monotonic time the response was ready (body read, handled)


RECORD_KEY = web.RequestKey("fake_discord_record", RecordedRequest)


@dataclass
class Fault:
    """An error to answer instead of running the handler (see `FakeDiscord.fail_next`), or a
    fault of the connection: `delay_s` answers late (after running the handler), `reset`
    drops the connection without an answer (the handler does not run)."""

    method: str | None
    path: re.Pattern[str] | None
    error: DiscordError | None
    remaining: int
    delay_s: float = 0.0
    reset: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py only parses JSON when Content-Type is exactly "application/json" (no charset).
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def snowflake(request: web.Request, key: str) -> int:
    """A route's id (the routes only match digits)."""
    return int(request.match_info[key])


class RestApi:
    """Route handlers over `DiscordState` and `ResponseService`, plus logging and faults."""

    def __init__(self, state: DiscordState, responses: ResponseService, *, token: str) -> None:
        self.state = state
        self.responses = responses
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.oauth = FakeOAuth(state.application_id)

    # ------------------------------------------------------------------------------ middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        record = RecordedRequest(request.method, request.path, route)
        request[RECORD_KEY] = record
        is_api = request.path.startswith(API_PREFIX)
        if is_api:
            self.requests.append(record)
        try:
            fault = self._take_fault(request) if is_api and route is not None else None
            if fault is not None and fault.reset:
                record.status = -1  # no answer at all
                if request.transport is not None:
                    request.transport.abort()
                self.state.changes.notify()
                return web.Response(status=500)  # never reaches the aborted connection
            if fault is not None and fault.error is not None:
                raise fault.error
            needs_auth = is_api and route is not None and self._needs_bot_auth(request)
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise errors.unauthorized()
            response = await handler(request)
            if fault is not None and fault.delay_s:
                await asyncio.sleep(fault.delay_s)
        except web.HTTPNotFound:
            self.unknown_routes.append(record)
            response = self._error(errors.not_found_route())
        except web.HTTPMethodNotAllowed:
            self.unknown_routes.append(record)
            response = self._error(errors.method_not_allowed())
        except DiscordError as exc:
            response = self._error(exc)
        if is_api:
            response.headers.update(self._ratelimit_headers(route or request.path))
        record.status = response.status
        record.done_at = time.monotonic()
        self.state.changes.notify()
        return response

    @staticmethod
    def _needs_bot_auth(request: web.Request) -> bool:
        rest = request.path[len(API_PREFIX) :]
        if rest == "/users/@me" and request.headers.get("Authorization", "").startswith("Bearer "):
            return False  # a user's OAuth2 token: checked by the handler
        return not rest.startswith(("/webhooks/", "/interactions/", "/oauth2/token"))

    def _take_fault(self, request: web.Request) -> Fault | None:
        path = request.path[len(API_PREFIX) :]
        for fault in self.faults:
            if fault.remaining > 0 and fault.matches(request.method, path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _error(exc: DiscordError) -> web.Response:
        return json_response(exc.body(), status=exc.status, headers=exc.headers)

    @staticmethod
    def _ratelimit_headers(route: str) -> dict[str, str]:
        bucket = hashlib.sha1(route.encode()).hexdigest()[:16]
        return {
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
        }

    async def _body(self, request: web.Request) -> ParsedBody:
        body = await parse_body(request, file_size_limit=self.state.attachment_size_limit)
        record = request[RECORD_KEY]
        record.payload = body.payload
        record.files = [(f.filename, len(f.data)) for f in body.files.values()]
        return body

    # ---------------------------------------------------------------------------------- routes

    def routes(self) -> list[web.RouteDef]:
        """The routes fluxbot calls (the bot, its login check and the web studio's OAuth2)."""
        p = API_PREFIX
        message = p + r"/channels/{channel_id:\d+}/messages/{message_id:\d+}"
        webhook = p + r"/webhooks/{application_id:\d+}/{token}"
        return [
            web.get(p + "/users/@me", self.get_me),
            web.get(p + r"/users/{user_id:\d+}", self.get_user),
            web.post(p + "/users/@me/channels", self.create_dm),
            web.post(p + "/oauth2/token", self.oauth.token),
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/applications/@me", self.get_application),
            web.put(p + r"/applications/{application_id:\d+}/commands", self.overwrite_commands),
            web.post(p + r"/interactions/{interaction_id:\d+}/{token}/callback", self.callback),
            web.post(webhook, self.execute_webhook),
            web.get(webhook + "/messages/@original", self.get_original),
            web.patch(webhook + "/messages/@original", self.edit_original),
            web.delete(webhook + "/messages/@original", self.delete_original),
            web.get(p + r"/channels/{channel_id:\d+}/messages", self.list_messages),
            web.post(p + r"/channels/{channel_id:\d+}/messages", self.create_message),
            web.patch(message, self.edit_message),
            web.delete(message, self.delete_message),
            web.put(message + "/reactions/{emoji}/@me", self.add_reaction),
            web.get(r"/attachments/{channel_id}/{attachment_id:\d+}/{filename}", self.download),
        ]

    # ------------------------------------------------------------------ users and application

    async def get_me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return json_response(self.oauth.bearer_user(request).me_payload())
        return json_response(self.state.bot.me_payload())

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(self.state.get_user(snowflake(request, "user_id")).payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        """Open (or return) the bot's DM with `recipient_id`; whether the bot may write there
        is decided when it sends."""
        recipient = (await self._body(request)).payload.get("recipient_id")
        if not str(recipient or "").isdigit():
            raise errors.invalid_form_body(
                errors.field_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
            )
        user = self.state.get_user(int(str(recipient)))
        return json_response(self.state.dm_channel(user).payload())

    async def get_application(self, request: web.Request) -> web.Response:
        state = self.state
        return json_response(
            {
                "id": str(state.application_id),
                "name": state.bot.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": APP_FLAG_COMMAND_BADGE,
                "owner": state.owner.payload(),
                "team": None,
                "bot": state.bot.payload(),
                "rpc_origins": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "tags": [],
                "approximate_guild_count": len(state.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        if snowflake(request, "application_id") != self.state.application_id:
            raise errors.unknown_application()
        data = loads(await request.read())
        request[RECORD_KEY].payload = data
        if not isinstance(data, list):
            raise errors.invalid_form_body(
                errors.field_error("_root", "BASE_TYPE_ARRAY", "Must be an array.")
            )
        return json_response(self.state.commands.overwrite(data))

    # ---------------------------------------------------------------------------- interactions

    async def callback(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        with_response = request.query.get("with_response", "").lower() in ("1", "true")
        result = await self.responses.callback(
            snowflake(request, "interaction_id"),
            request.match_info["token"],
            body,
            with_response=with_response,
        )
        return no_content() if result is None else json_response(result)

    def _webhook(self, request: web.Request) -> InteractionRecord:
        return self.responses.webhook(
            snowflake(request, "application_id"), request.match_info["token"]
        )

    async def execute_webhook(self, request: web.Request) -> web.Response:
        record = self._webhook(request)
        message = await self.responses.followup(record, await self._body(request))
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(self.state.message_payload(message))
        return no_content()

    async def get_original(self, request: web.Request) -> web.Response:
        message = self.responses.original(self._webhook(request))
        return json_response(self.state.message_payload(message))

    async def edit_original(self, request: web.Request) -> web.Response:
        message = self.responses.original(self._webhook(request))
        await self.state.edit_message(message, await self._body(request))
        return json_response(self.state.message_payload(message))

    async def delete_original(self, request: web.Request) -> web.Response:
        message = self.responses.original(self._webhook(request))
        await self.state.delete_message(message)
        return no_content()

    # -------------------------------------------------------------------------------- messages

    def _channel(self, request: web.Request, needed: int) -> FakeChannel:
        channel = self.state.get_channel(snowflake(request, "channel_id"))
        self.state.require(channel, self.state.bot.id, needed)
        return channel

    def _message(
        self, request: web.Request, needed: int = permissions.VIEW_CHANNEL
    ) -> StoredMessage:
        """A message the bot may touch: in a channel it can see, not ephemeral (those are only
        reachable through their interaction's webhook), and its own (every message in the fake
        is the bot's: the test users act through interactions and reactions)."""
        channel = self._channel(request, needed)
        message = self.state.get_message(channel.id, snowflake(request, "message_id"))
        if message.ephemeral:
            raise errors.unknown_message()
        return message

    async def list_messages(self, request: web.Request) -> web.Response:
        """Channel history, newest first (the bot reads it to find a followup that may have
        been posted before its answer was lost)."""
        channel = self._channel(request, READABLE)
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        found = [
            m
            for m in self.state.messages.values()
            if m.channel_id == channel.id and not m.ephemeral and not m.deleted
        ]
        if "before" in request.query:
            found = [m for m in found if m.id < int(request.query["before"])]
        if "after" in request.query:
            found = [m for m in found if m.id > int(request.query["after"])][:limit]
        newest_first = sorted(found, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([self.state.message_payload(m) for m in newest_first])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request, permissions.VIEW_CHANNEL | permissions.SEND_MESSAGES)
        body = await self._body(request)
        needed = 0
        if body.files:
            needed |= permissions.ATTACH_FILES
        if body.payload.get("message_reference"):
            needed |= permissions.READ_MESSAGE_HISTORY
        self.state.require(channel, self.state.bot.id, needed)
        message = await self.state.create_message(channel, self.state.bot, body)
        return json_response(self.state.message_payload(message))

    async def edit_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        await self.state.edit_message(message, await self._body(request))
        return json_response(self.state.message_payload(message))

    async def delete_message(self, request: web.Request) -> web.Response:
        await self.state.delete_message(self._message(request))
        return no_content()

    async def add_reaction(self, request: web.Request) -> web.Response:
        """A reaction needs READ_MESSAGE_HISTORY, and ADD_REACTIONS unless the emoji is there."""
        message = self._message(request, READABLE)
        emoji = self.state.check_emoji(request.match_info["emoji"])
        if emoji not in message.reactions:
            channel = self.state.get_channel(message.channel_id)
            self.state.require(channel, self.state.bot.id, permissions.ADD_REACTIONS)
        await self.state.add_reaction(message, self.state.bot, emoji)
        return no_content()

    # ------------------------------------------------------------------------------------- cdn

    async def download(self, request: web.Request) -> web.Response:
        """The attachment "CDN": discord.py's `Attachment.read()` fetches `url` from here."""
        attachment = self.state.attachments.get(snowflake(request, "attachment_id"))
        if attachment is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type)
