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
from .interactions import InteractionRecord, InteractionService
from .models import FakeChannel, FakeGuild, StoredMessage
from .multipart import ParsedBody, parse_body
from .oauth import FakeOAuth
from .state import PRIVILEGED_INTENTS, DiscordState

API_PREFIX = "/api/v10"
READABLE = permissions.VIEW_CHANNEL | permissions.READ_MESSAGE_HISTORY
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Application flags that say which privileged intents are enabled for the bot.
APP_FLAG_PRESENCE_LIMITED = 1 << 13
APP_FLAG_GUILD_MEMBERS_LIMITED = 1 << 15
APP_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19
APP_FLAG_COMMAND_BADGE = 1 << 23


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
    raw = request.match_info[key]
    if not raw.isdigit():
        raise errors.invalid_form_body(
            errors.field_error(key, "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
        )
    return int(raw)


class RestApi:
    """Route handlers over `DiscordState` and `InteractionService`, plus logging and faults."""

    def __init__(
        self,
        state: DiscordState,
        interactions: InteractionService,
        *,
        token: str,
        gateway_url: Callable[[], str],
        allowed_privileged_intents: int,
    ) -> None:
        self.state = state
        self.interactions = interactions
        self.token = token
        self.gateway_url = gateway_url
        self.allowed_privileged_intents = allowed_privileged_intents
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

    async def _json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            value = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc
        request[RECORD_KEY].payload = value
        return value

    # ---------------------------------------------------------------------------------- routes

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        c = p + "/channels/{channel_id}"
        m = c + "/messages/{message_id}"
        wh = p + "/webhooks/{application_id}/{token}"
        app = p + "/applications/{application_id}"
        return [
            web.get(p + "/gateway", self.get_gateway),
            web.get(p + "/gateway/bot", self.get_gateway_bot),
            web.get(p + "/users/@me", self.get_me),
            web.post(p + "/oauth2/token", self.oauth.token),
            web.post(p + "/users/@me/channels", self.create_dm),
            web.get(p + "/users/{user_id}", self.get_user),
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/applications/@me", self.get_application),
            web.get(app + "/commands", self.list_commands),
            web.put(app + "/commands", self.overwrite_commands),
            web.post(app + "/commands", self.upsert_command),
            web.get(app + r"/commands/{command_id:\d+}", self.get_command),
            web.patch(app + r"/commands/{command_id:\d+}", self.edit_command),
            web.delete(app + r"/commands/{command_id:\d+}", self.delete_command),
            web.get(app + "/guilds/{guild_id}/commands", self.list_commands),
            web.put(app + "/guilds/{guild_id}/commands", self.overwrite_commands),
            web.post(app + "/guilds/{guild_id}/commands", self.upsert_command),
            web.get(app + "/guilds/{guild_id}/commands/permissions", self.command_permissions),
            web.get(app + r"/guilds/{guild_id}/commands/{command_id:\d+}", self.get_command),
            web.patch(app + r"/guilds/{guild_id}/commands/{command_id:\d+}", self.edit_command),
            web.delete(app + r"/guilds/{guild_id}/commands/{command_id:\d+}", self.delete_command),
            web.post(p + "/interactions/{interaction_id}/{token}/callback", self.callback),
            web.post(wh, self.execute_webhook),
            web.get(wh + "/messages/{message_id}", self.get_webhook_message),
            web.patch(wh + "/messages/{message_id}", self.edit_webhook_message),
            web.delete(wh + "/messages/{message_id}", self.delete_webhook_message),
            web.get(c, self.get_channel),
            web.post(c + "/typing", self.typing),
            web.get(c + "/messages", self.list_messages),
            web.post(c + "/messages", self.create_message),
            web.get(m, self.get_message),
            web.patch(m, self.edit_message),
            web.delete(m, self.delete_message),
            web.delete(m + "/reactions", self.clear_reactions),
            web.get(m + "/reactions/{emoji}", self.list_reactions),
            web.delete(m + "/reactions/{emoji}", self.clear_emoji),
            web.put(m + "/reactions/{emoji}/@me", self.add_reaction),
            web.delete(m + "/reactions/{emoji}/@me", self.remove_own_reaction),
            web.delete(m + "/reactions/{emoji}/{user_id}", self.remove_user_reaction),
            web.get(p + "/guilds/{guild_id}", self.get_guild),
            web.get(p + "/guilds/{guild_id}/channels", self.get_guild_channels),
            web.get(p + "/guilds/{guild_id}/roles", self.get_guild_roles),
            web.get(p + "/guilds/{guild_id}/members/{user_id}", self.get_member),
            web.get("/attachments/{channel_id}/{attachment_id}/{filename}", self.download),
        ]

    # ------------------------------------------------------------------------- gateway, users

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url()})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway_url(),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return json_response(self.oauth.bearer_user(request).me_payload())
        return json_response(self.state.bot.me_payload())

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(self.state.get_user(snowflake(request, "user_id")).payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        data = await self._json(request) or {}
        user = self.state.get_user(int(data.get("recipient_id", 0)))
        return json_response(self.state.dm_channel(user).payload())

    async def get_application(self, request: web.Request) -> web.Response:
        state = self.state
        flags = APP_FLAG_COMMAND_BADGE
        allowed = self.allowed_privileged_intents & PRIVILEGED_INTENTS
        if allowed & (1 << 8):
            flags |= APP_FLAG_PRESENCE_LIMITED
        if allowed & (1 << 1):
            flags |= APP_FLAG_GUILD_MEMBERS_LIMITED
        if allowed & (1 << 15):
            flags |= APP_FLAG_MESSAGE_CONTENT_LIMITED
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
                "flags": flags,
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

    # -------------------------------------------------------------------------------- commands

    def _command_scope(self, request: web.Request) -> int | None:
        if snowflake(request, "application_id") != self.state.application_id:
            raise errors.unknown_application()
        if "guild_id" not in request.match_info:
            return None
        guild_id = snowflake(request, "guild_id")
        self.state.get_guild(guild_id)
        return guild_id

    async def list_commands(self, request: web.Request) -> web.Response:
        return json_response(self.state.commands.scope(self._command_scope(request)))

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        data = await self._json(request)
        if not isinstance(data, list):
            raise errors.invalid_form_body(
                errors.field_error("_root", "BASE_TYPE_ARRAY", "Must be an array.")
            )
        return json_response(self.state.commands.overwrite(scope, data))

    async def upsert_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        data = await self._json(request) or {}
        return json_response(self.state.commands.upsert(scope, data), status=201)

    async def get_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        return json_response(self.state.commands.get(scope, snowflake(request, "command_id")))

    async def edit_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        data = await self._json(request) or {}
        command_id = snowflake(request, "command_id")
        return json_response(self.state.commands.edit(scope, command_id, data))

    async def delete_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        self.state.commands.delete(scope, snowflake(request, "command_id"))
        return no_content()

    async def command_permissions(self, request: web.Request) -> web.Response:
        self._command_scope(request)
        return json_response([])

    # ---------------------------------------------------------------------------- interactions

    async def callback(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        with_response = request.query.get("with_response", "").lower() in ("1", "true")
        result = await self.interactions.callback(
            snowflake(request, "interaction_id"),
            request.match_info["token"],
            body,
            with_response=with_response,
        )
        return no_content() if result is None else json_response(result)

    def _webhook(self, request: web.Request) -> InteractionRecord:
        return self.interactions.webhook(
            snowflake(request, "application_id"), request.match_info["token"]
        )

    async def execute_webhook(self, request: web.Request) -> web.Response:
        record = self._webhook(request)
        body = await self._body(request)
        message = await self.interactions.followup(record, body)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(self.state.message_payload(message))
        return no_content()

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook(request)
        message = self.interactions.webhook_message(record, request.match_info["message_id"])
        return json_response(self.state.message_payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook(request)
        message = self.interactions.webhook_message(record, request.match_info["message_id"])
        body = await self._body(request)
        await self.state.edit_message(message, body)
        return json_response(self.state.message_payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook(request)
        message = self.interactions.webhook_message(record, request.match_info["message_id"])
        await self.state.delete_message(message)
        return no_content()

    # -------------------------------------------------------------------------------- channels

    def _channel(self, request: web.Request, needed: int = permissions.VIEW_CHANNEL) -> FakeChannel:
        channel = self.state.get_channel(snowflake(request, "channel_id"))
        self.state.require(channel, self.state.bot.id, needed)
        return channel

    def _message(
        self, request: web.Request, needed: int = permissions.VIEW_CHANNEL
    ) -> StoredMessage:
        channel = self._channel(request, needed)
        message = self.state.get_message(channel.id, snowflake(request, "message_id"))
        if message.ephemeral:
            raise errors.unknown_message()
        return message

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        return json_response(channel.payload())

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request, permissions.VIEW_CHANNEL | permissions.SEND_MESSAGES)
        return no_content()

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request, READABLE)
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        found = self.state.channel_messages(channel.id, include_ephemeral=False)
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

    async def get_message(self, request: web.Request) -> web.Response:
        message = self._message(request, READABLE)
        return json_response(self.state.message_payload(message))

    async def edit_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        body = await self._body(request)
        if message.author.id != self.state.bot.id:
            only_flags = set(body.payload) <= {"flags"} and not body.files
            if not only_flags:
                raise errors.cannot_edit_others()
            channel = self.state.get_channel(message.channel_id)
            self.state.require(channel, self.state.bot.id, permissions.MANAGE_MESSAGES)
        await self.state.edit_message(message, body)
        return json_response(self.state.message_payload(message))

    async def delete_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        if message.author.id != self.state.bot.id:
            channel = self.state.get_channel(message.channel_id)
            self.state.require(channel, self.state.bot.id, permissions.MANAGE_MESSAGES)
        await self.state.delete_message(message)
        return no_content()

    # ------------------------------------------------------------------------------- reactions

    async def add_reaction(self, request: web.Request) -> web.Response:
        message = self._message(request, READABLE)
        emoji = request.match_info["emoji"]
        key, _ = self.state.parse_emoji(emoji)
        if key not in message.reactions:
            channel = self.state.get_channel(message.channel_id)
            self.state.require(channel, self.state.bot.id, permissions.ADD_REACTIONS)
        await self.state.add_reaction(message, self.state.bot, emoji)
        return no_content()

    async def remove_own_reaction(self, request: web.Request) -> web.Response:
        message = self._message(request)
        await self.state.remove_reaction(message, self.state.bot.id, request.match_info["emoji"])
        return no_content()

    async def remove_user_reaction(self, request: web.Request) -> web.Response:
        message = self._message(request)
        user_id = snowflake(request, "user_id")
        if user_id != self.state.bot.id:
            channel = self.state.get_channel(message.channel_id)
            self.state.require(channel, self.state.bot.id, permissions.MANAGE_MESSAGES)
        await self.state.remove_reaction(message, user_id, request.match_info["emoji"])
        return no_content()

    async def list_reactions(self, request: web.Request) -> web.Response:
        message = self._message(request, READABLE)
        key, _ = self.state.parse_emoji(request.match_info["emoji"])
        users = [self.state.users[u].payload() for u in message.reaction_users(key)]
        return json_response(users)

    async def clear_emoji(self, request: web.Request) -> web.Response:
        message = self._message(request, permissions.VIEW_CHANNEL | permissions.MANAGE_MESSAGES)
        await self.state.clear_reactions(message, request.match_info["emoji"])
        return no_content()

    async def clear_reactions(self, request: web.Request) -> web.Response:
        message = self._message(request, permissions.VIEW_CHANNEL | permissions.MANAGE_MESSAGES)
        await self.state.clear_reactions(message)
        return no_content()

    # ---------------------------------------------------------------------------------- guilds

    def _guild(self, request: web.Request) -> FakeGuild:
        return self.state.get_guild(snowflake(request, "guild_id"))

    async def get_guild(self, request: web.Request) -> web.Response:
        data = self._guild(request).payload()
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at"):
            data.pop(key, None)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([c.payload() for c in guild.channels.values()])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([r.payload() for r in guild.roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        member = guild.members.get(snowflake(request, "user_id"))
        if member is None:
            raise errors.unknown_member()
        return json_response(member.payload())

    # ------------------------------------------------------------------------------------- cdn

    async def download(self, request: web.Request) -> web.Response:
        """The attachment "CDN": discord.py's `Attachment.read()` fetches `url` from here."""
        attachment = self.state.attachments.get(snowflake(request, "attachment_id"))
        if attachment is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type)
