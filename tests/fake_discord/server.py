"""`FakeDiscord`: the test-facing controller that runs the REST + gateway server on 127.0.0.1.

A test starts it, points the bot at `api_base` / `gateway_url`, then acts as Discord's users
(`slash`, `autocomplete`, `click`, `submit_modal`, `react`) and asserts on what the bot posted
(`messages`, interaction records, attachments' bytes), injecting REST faults (`fail_next`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from . import permissions
from .errors import DiscordError, rate_limited
from .gateway import GatewayHub
from .interactions import InteractionRecord, InteractionService
from .models import FakeChannel, FakeGuild, FakeRole, FakeUser, StoredMessage
from .oauth import FakeOAuth
from .responses import ResponseService
from .rest import API_PREFIX, Fault, RecordedRequest, RestApi
from .state import DiscordState

T = TypeVar("T")
MiB = 1024 * 1024
DEFAULT_TOKEN = "fake-discord-bot-token"
TOKEN_TTL_S = 15 * 60.0  # an interaction token's life


class FakeDiscord:
    """A local Discord: REST under `/api/v10`, the gateway at `/gateway`, files at `/attachments`.

    The world it starts with: one guild owned by `owner`, with `admin` (Administrator role),
    `alice` and `bob` (no roles), the bot (its managed role), a text channel `channel` and an
    NSFW text channel `nsfw_channel`.
    """

    def __init__(self, *, ack_timeout: float | None = 3.0) -> None:
        """`ack_timeout`: Discord's deadline for the first answer to an interaction."""
        self.token = DEFAULT_TOKEN
        self.state = DiscordState(attachment_size_limit=10 * MiB)
        self.interactions = InteractionService(self.state)
        responses = ResponseService(
            self.state, self.interactions, ack_timeout=ack_timeout, token_ttl=TOKEN_TTL_S
        )
        self.gateway = GatewayHub(self.state, token=self.token)
        self.rest = RestApi(self.state, responses, token=self.token)
        self.state.emit = self.gateway.dispatch
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._build_world()

    def _build_world(self) -> None:
        state = self.state
        self.owner: FakeUser = state.owner
        self.bot_user: FakeUser = state.bot
        self.admin = state.add_user("admin")
        self.alice = state.add_user("alice")
        self.bob = state.add_user("bob")
        self.guild: FakeGuild = state.add_guild("fluxbot test guild", self.owner)
        self.admin_role: FakeRole = state.add_role(
            self.guild, "Administrator", permissions.ADMINISTRATOR
        )
        self.bot_role: FakeRole = state.add_role(
            self.guild,
            self.bot_user.username,
            permissions.BOT_ROLE_DEFAULT,
            managed=True,
            bot_id=self.bot_user.id,
        )
        state.add_member(self.guild, self.owner)
        state.add_member(self.guild, self.bot_user, [self.bot_role])
        state.add_member(self.guild, self.admin, [self.admin_role])
        state.add_member(self.guild, self.alice)
        state.add_member(self.guild, self.bob)
        self.channel: FakeChannel = state.add_channel(self.guild, "general")
        self.nsfw_channel: FakeChannel = state.add_channel(self.guild, "nsfw-art", nsfw=True)

    # --------------------------------------------------------------------------------- lifecycle

    async def start(self) -> tuple[str, str]:
        """Listen on an ephemeral 127.0.0.1 port; returns (api_base, gateway_url)."""
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=256 * MiB)
        app.add_routes(self.rest.routes())
        app.add_routes([web.get("/gateway", self.gateway.handle)])
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        self.state.public_base = self.http_base
        self.gateway.public_url = self.gateway_url
        return self.api_base, self.gateway_url

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def http_base(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """Value for FLUXBOT_DISCORD_API_BASE / `discord.http.Route.BASE`."""
        return self.http_base + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """Value for FLUXBOT_DISCORD_GATEWAY_URL (discord.py appends ?v=10&encoding=json...)."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def oauth(self) -> FakeOAuth:
        """OAuth2 for web logins: client id/secret, and `authorize` to play the user."""
        return self.rest.oauth

    @property
    def attachment_size_limit(self) -> int:
        return self.state.attachment_size_limit

    @attachment_size_limit.setter
    def attachment_size_limit(self, value: int) -> None:
        self.state.attachment_size_limit = value

    # ------------------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST call the bot made, in order."""
        return self.rest.requests

    def command(self, name: str) -> dict[str, Any] | None:
        """The registered (synced) command `name`, as Discord stores it."""
        return self.state.commands.find(name)

    def messages(self, *, include_ephemeral: bool = True) -> list[StoredMessage]:
        """Stored messages that were not deleted, oldest first."""
        return [
            m
            for m in self.state.messages.values()
            if not m.deleted and (include_ephemeral or not m.ephemeral)
        ]

    def describe(self) -> str:
        """Recent activity, appended to timeout errors to make failures readable."""
        lines = [
            f"gateway: {len(self.gateway.sessions)} session(s), "
            f"identify={self.gateway.identify_count}",
            "last REST calls: "
            + ", ".join(
                f"{r.method} {(r.route or r.path).removeprefix(API_PREFIX)} -> {r.status}"
                for r in self.requests[-8:]
            ),
        ]
        if self.rest.unknown_routes:
            unknown = ", ".join(f"{r.method} {r.path}" for r in self.rest.unknown_routes)
            lines.append("unknown routes: " + unknown)
        return "\n".join(lines)

    async def wait_until(
        self, check: Callable[[], T | None], *, within_s: float = 5.0, what: str = "a condition"
    ) -> T:
        """Wait until `check()` returns something truthy (re-checked on every state change)."""
        return await self.state.changes.wait_for(
            check, within_s=within_s, what=what, context=self.describe
        )

    async def wait_ready(self, within_s: float = 10.0) -> None:
        """Wait until a bot has IDENTIFYed and has READY + GUILD_CREATE."""
        await self.wait_until(
            lambda: bool(self.gateway.sessions),
            within_s=within_s,
            what="the bot to IDENTIFY",
        )

    async def wait_for_commands(self, *names: str, within_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until the bot has registered (synced) every command in `names`."""

        def check() -> list[dict[str, Any]] | None:
            found = [self.command(name) for name in names]
            return [c for c in found if c is not None] if all(found) else None

        return await self.wait_until(check, within_s=within_s, what=f"commands {names} synced")

    async def wait_for_message(
        self, predicate: Callable[[StoredMessage], bool], *, within_s: float = 5.0
    ) -> StoredMessage:
        """The first stored (not deleted) message matching `predicate`, waiting if needed."""

        def check() -> StoredMessage | None:
            return next((m for m in self.messages() if predicate(m)), None)

        return await self.wait_until(check, within_s=within_s, what="a matching message")

    # ---------------------------------------------------------------------------------- world

    def add_user(
        self, username: str, *, admin: bool = False, roles: Iterable[FakeRole] = ()
    ) -> FakeUser:
        """A new member of the guild (an Administrator with `admin`)."""
        user = self.state.add_user(username)
        member_roles = [*roles, *([self.admin_role] if admin else [])]
        self.state.add_member(self.guild, user, member_roles)
        return user

    # ------------------------------------------------------------------------ acting as users

    def _require_bot(self) -> None:
        if not self.gateway.sessions:
            raise RuntimeError("no bot session: start the bot and await server.wait_ready() first")

    async def slash(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        channel: FakeChannel | None = None,
    ) -> InteractionRecord:
        """Run `/name` ("group sub" for subcommands) as `user`; options typed from the schema."""
        self._require_bot()
        return await self.interactions.slash(user, name, options or {}, channel or self.channel)

    async def raw_slash(
        self,
        user: FakeUser,
        name: str,
        mutate: Callable[[dict[str, Any]], None],
        *,
        channel: FakeChannel | None = None,
    ) -> InteractionRecord:
        """Send a /name interaction after `mutate` changed its payload (malformed on purpose)."""
        self._require_bot()
        return await self.interactions.raw_slash(user, name, channel or self.channel, mutate)

    async def raw_event(self, event: str, data: dict[str, Any]) -> None:
        """Dispatch any gateway event as given, however malformed."""
        self._require_bot()
        await self.gateway.dispatch(event, data)

    async def autocomplete(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        channel: FakeChannel | None = None,
    ) -> InteractionRecord:
        """Ask for autocomplete on option `focused`; the answer is in `record.choices`."""
        self._require_bot()
        return await self.interactions.autocomplete(
            user, name, options, focused, channel or self.channel
        )

    async def click(
        self, user: FakeUser, message: StoredMessage, custom_id: str
    ) -> InteractionRecord:
        """Press the button `custom_id` on `message` (it must exist and be enabled)."""
        self._require_bot()
        return await self.interactions.click(user, message, custom_id)

    async def submit_modal(
        self, user: FakeUser, opened_by: InteractionRecord, values: dict[str, Any]
    ) -> InteractionRecord:
        """Submit the modal the bot opened in answer to `opened_by` ({custom_id: value})."""
        self._require_bot()
        return await self.interactions.submit_modal(user, opened_by, values)

    async def react(self, user: FakeUser, message: StoredMessage, emoji: str) -> None:
        """Add `user`'s reaction (MESSAGE_REACTION_ADD goes to the bot)."""
        await self.state.add_reaction(message, user, emoji)

    # ---------------------------------------------------------------------------- disruptions

    def fail_next(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int = 503,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` matching REST calls with an error instead.

        `path` is a regex searched in the path after /api/v10. With `retry_after` the error is a
        429 that discord.py retries after sleeping. Note discord.py retries 500/502/504 itself
        (sleeping 1 s, 3 s, ...), so use 503 or a 4xx for a fast failure.
        """
        if retry_after is not None:
            error = rate_limited(retry_after)
        else:
            error = DiscordError(status, 0, f"{status}: fake_discord fault")
        pattern = re.compile(path) if path is not None else None
        self.rest.faults.append(Fault(method, pattern, error, times))

    def delay_next(
        self, method: str | None = None, path: str | None = None, *, seconds: float, times: int = 1
    ) -> None:
        """Run the next `times` matching REST calls, but answer only after `seconds` (a client
        with a shorter timeout gives up although the call took effect)."""
        pattern = re.compile(path) if path is not None else None
        self.rest.faults.append(Fault(method, pattern, None, times, delay_s=seconds))

    def reset_next(
        self, method: str | None = None, path: str | None = None, *, times: int = 1
    ) -> None:
        """Drop the connection of the next `times` matching REST calls without answering (the
        call has no effect), as a connection reset does."""
        pattern = re.compile(path) if path is not None else None
        self.rest.faults.append(Fault(method, pattern, None, times, reset=True))
