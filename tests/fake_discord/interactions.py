"""Interactions a test user causes: the INTERACTION_CREATE payloads, and records of the answers.

A test "clicks" or "types" something; this module turns that into the exact payload Discord would
dispatch (options typed from the synced command schema, `resolved` data, member permissions). What
the bot answers (`responses.py`) is kept on the interaction's `InteractionRecord`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import (
    FakeChannel,
    FakeUser,
    StoredMessage,
    leaf_components,
)
from .multipart import UploadedFile
from .options import OptionBuilder
from .state import DiscordState
from .waiting import ChangeFeed

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE = 8
CALLBACK_MODAL = 9

ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_MODAL,
    },
    MESSAGE_COMPONENT: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_UPDATE,
        CALLBACK_UPDATE_MESSAGE,
        CALLBACK_MODAL,
    },
    AUTOCOMPLETE: {CALLBACK_AUTOCOMPLETE},
    MODAL_SUBMIT: {
        CALLBACK_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_CHANNEL_MESSAGE,
        CALLBACK_DEFERRED_UPDATE,
        CALLBACK_UPDATE_MESSAGE,
    },
}

COMPONENT_TEXT_INPUT = 4


@dataclass
class CallbackRecord:
    """What the bot answered on `/interactions/{id}/{token}/callback`."""

    type: int
    data: dict[str, Any] | None
    files: list[UploadedFile]
    seconds_after_dispatch: float


@dataclass(eq=False)
class InteractionRecord:
    """One dispatched interaction and everything the bot did with it."""

    id: int
    token: str
    type: int
    user: FakeUser
    channel: FakeChannel
    guild_id: int | None
    payload: dict[str, Any]
    name: str | None
    source_message: StoredMessage | None
    changes: ChangeFeed = field(repr=False)
    dispatched_at: float = field(default_factory=time.monotonic)
    callbacks: list[CallbackRecord] = field(default_factory=list)
    original: StoredMessage | None = None
    followups: list[StoredMessage] = field(default_factory=list)
    expired: bool = False

    @property
    def response(self) -> CallbackRecord | None:
        return self.callbacks[0] if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def deferred(self) -> bool:
        return self.response is not None and self.response.type in (
            CALLBACK_DEFERRED_CHANNEL_MESSAGE,
            CALLBACK_DEFERRED_UPDATE,
        )

    @property
    def ephemeral(self) -> bool:
        return self.original is not None and self.original.ephemeral

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9): custom_id, title, components."""
        response = self.response
        return response.data if response and response.type == CALLBACK_MODAL else None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot returned (callback type 8)."""
        response = self.response
        if response and response.type == CALLBACK_AUTOCOMPLETE:
            return list((response.data or {}).get("choices") or [])
        return None

    @property
    def messages(self) -> list[StoredMessage]:
        """The original response (if any) followed by the followups, as the user sees them."""
        found = [self.original] if self.original is not None else []
        return found + [m for m in self.followups if m is not self.original]

    def expire(self) -> None:
        """Make the token dead now, as if 15 minutes had passed."""
        self.expired = True

    async def wait_response(self, within_s: float = 3.0) -> CallbackRecord:
        """The bot's first callback (ack); Discord wants it within 3 seconds."""
        return await self.changes.wait_for(
            lambda: self.response, within_s=within_s, what=f"a response to {self.name!r}"
        )


class InteractionService:
    """Creates the interactions a test user causes and keeps their records."""

    def __init__(self, state: DiscordState) -> None:
        self.state = state
        self.options = OptionBuilder(state)
        self.records: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}

    # ----------------------------------------------------------------------- building payloads

    def _base_payload(
        self,
        kind: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any],
        *,
        interaction_id: int,
        token: str,
    ) -> dict[str, Any]:
        state = self.state
        guild = state.guild_of(channel)
        user_perms = state.permissions_for(user.id, channel)
        return {
            "id": str(interaction_id),
            "application_id": str(state.application_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": user.locale,
            "attachment_size_limit": state.attachment_size_limit,
            "app_permissions": str(state.permissions_for(state.bot.id, channel)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "channel_id": str(channel.id),
            "channel": channel.payload(permissions=user_perms),
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "guild_locale": guild.locale,
            "member": state.member_payload(guild, user, permissions=user_perms),
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
        }

    def _register(
        self,
        kind: int,
        user: FakeUser,
        channel: FakeChannel,
        data: dict[str, Any],
        *,
        name: str | None,
        source: StoredMessage | None = None,
        message_payload: dict[str, Any] | None = None,
    ) -> InteractionRecord:
        interaction_id = self.state.ids.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
        payload = self._base_payload(
            kind, user, channel, data, interaction_id=interaction_id, token=token
        )
        if message_payload is not None:
            payload["message"] = message_payload
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            user=user,
            channel=channel,
            guild_id=channel.guild_id,
            payload=payload,
            name=name,
            source_message=source,
            changes=self.state.changes,
        )
        self.records[record.id] = record
        self.by_token[token] = record
        return record

    async def _dispatch(self, record: InteractionRecord) -> InteractionRecord:
        record.dispatched_at = time.monotonic()
        await self.state.emit("INTERACTION_CREATE", record.payload, 0)
        self.state.changes.notify()
        return record

    # ------------------------------------------------------------------ dispatching (for tests)

    async def slash(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any],
        channel: FakeChannel,
    ) -> InteractionRecord:
        data = self.options.command_data(user, channel, name, options)
        record = self._register(APPLICATION_COMMAND, user, channel, data, name=name)
        return await self._dispatch(record)

    async def raw_slash(
        self,
        user: FakeUser,
        name: str,
        channel: FakeChannel,
        mutate: Callable[[dict[str, Any]], None],
    ) -> InteractionRecord:
        """A /name interaction whose payload `mutate` changes in place before it is sent: for
        the malformed payloads Discord should never send."""
        command = self.state.commands.find(name)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self.state.ids.next()),
            "name": name,
            "type": 1,
        }
        record = self._register(APPLICATION_COMMAND, user, channel, data, name=name)
        mutate(record.payload)
        return await self._dispatch(record)

    async def autocomplete(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any],
        focused: str,
        channel: FakeChannel,
    ) -> InteractionRecord:
        data = self.options.command_data(user, channel, name, options, focused=focused)
        record = self._register(AUTOCOMPLETE, user, channel, data, name=name)
        return await self._dispatch(record)

    async def click(
        self, user: FakeUser, message: StoredMessage, custom_id: str
    ) -> InteractionRecord:
        """Press a button of `message`, which must be there and enabled."""
        button = message.find_component(custom_id)
        if button is None:
            raise LookupError(
                f"message {message.id} has no button {custom_id!r}; it has {message.custom_ids()}"
            )
        if button.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled; a user cannot press it")
        data = {"custom_id": custom_id, "component_type": button["type"]}
        channel = self.state.get_channel(message.channel_id)
        record = self._register(
            MESSAGE_COMPONENT,
            user,
            channel,
            data,
            name=custom_id,
            source=message,
            message_payload=self.state.message_payload(message),
        )
        return await self._dispatch(record)

    async def submit_modal(
        self, user: FakeUser, opened_by: InteractionRecord, values: dict[str, str]
    ) -> InteractionRecord:
        """Submit the modal of `opened_by`: action rows of text inputs, filled from `values`."""
        modal = opened_by.modal
        if modal is None:
            raise ValueError(f"interaction {opened_by.name!r} did not open a modal")
        rows = modal["components"]
        inputs = {c["custom_id"]: c for c in leaf_components(rows)}
        unknown = set(values) - set(inputs)
        if unknown:
            raise ValueError(f"modal {modal['custom_id']!r} has no inputs {sorted(unknown)}")
        submitted = []
        for custom_id, text_input in inputs.items():
            value = values.get(custom_id, text_input.get("value") or "")
            if text_input.get("required", True) and not value:
                raise ValueError(f"modal input {custom_id!r} is required")
            item = {"type": COMPONENT_TEXT_INPUT, "custom_id": custom_id, "value": value}
            submitted.append({"type": 1, "components": [item]})
        data = {"custom_id": modal["custom_id"], "components": submitted}
        record = self._register(
            MODAL_SUBMIT,
            user,
            opened_by.channel,
            data,
            name=modal["custom_id"],
            source=opened_by.source_message,
        )
        return await self._dispatch(record)
