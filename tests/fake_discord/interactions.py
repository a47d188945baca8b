"""Interactions end to end: building INTERACTION_CREATE payloads and answering their webhooks.

A test "clicks" or "types" something; this module turns that into the exact payload Discord would
dispatch (options typed from the synced command schema, `resolved` data, member permissions), then
records what the bot answered through `/interactions/.../callback` and `/webhooks/{app}/{token}`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .models import (
    MESSAGE_CHAT_INPUT_COMMAND,
    MESSAGE_DEFAULT,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    FakeChannel,
    FakeUser,
    StoredMessage,
    walk_components,
)
from .multipart import ParsedBody, UploadedFile
from .options import OptionBuilder
from .state import DiscordState
from .waiting import ChangeFeed

PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

CALLBACK_PONG = 1
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE = 8
CALLBACK_MODAL = 9

ALLOWED_CALLBACKS = {
    PING: {CALLBACK_PONG},
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

COMPONENT_BUTTON = 2
COMPONENT_TEXT_INPUT = 4
SELECT_TYPES = {3, 5, 6, 7, 8}


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

    async def wait_original(
        self, predicate: Callable[[StoredMessage], bool] | None = None, *, within_s: float = 5.0
    ) -> StoredMessage:
        """The @original message once it is no longer "thinking…" (and matches `predicate`)."""

        def check() -> StoredMessage | None:
            original = self.original
            if original is None or original.loading:
                return None
            if predicate is not None and not predicate(original):
                return None
            return original

        return await self.changes.wait_for(
            check, within_s=within_s, what=f"the original response of {self.name!r}"
        )

    async def wait_followups(self, count: int = 1, *, within_s: float = 5.0) -> list[StoredMessage]:
        """At least `count` followups (the first one may be the filled-in deferred original)."""

        def check() -> list[StoredMessage] | None:
            return list(self.followups) if len(self.followups) >= count else None

        return await self.changes.wait_for(
            check, within_s=within_s, what=f"{count} followup(s) to {self.name!r}"
        )


class InteractionService:
    """Creates interactions for tests and serves the interaction callback/webhook routes."""

    def __init__(self, state: DiscordState, *, ack_timeout: float | None, token_ttl: float) -> None:
        self.state = state
        self.ack_timeout = ack_timeout
        self.token_ttl = token_ttl
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
        payload: dict[str, Any] = {
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
        }
        if guild is not None:
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["member"] = state.member_payload(guild, user, permissions=user_perms)
            payload["authorizing_integration_owners"] = {"0": str(guild.id)}
            payload["context"] = 0
        else:
            payload["user"] = user.payload()
            payload["authorizing_integration_owners"] = {"0": "0"}
            payload["context"] = 1
        return payload

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
        await self.state.emit("INTERACTION_CREATE", record.payload, intent=0)
        self.state.changes.notify()
        return record

    # ------------------------------------------------------------------ dispatching (for tests)

    async def slash(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any],
        channel: FakeChannel,
        *,
        strict: bool = True,
    ) -> InteractionRecord:
        data = self.options.command_data(user, channel, name, options, strict=strict)
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
        command = self.state.commands.find(name, channel.guild_id)
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
        data = self.options.command_data(user, channel, name, options, strict=True, focused=focused)
        record = self._register(AUTOCOMPLETE, user, channel, data, name=name)
        return await self._dispatch(record)

    async def component(
        self,
        user: FakeUser,
        message: StoredMessage,
        custom_id: str,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        component = message.find_component(custom_id)
        if component is None:
            raise LookupError(
                f"message {message.id} has no component {custom_id!r}; "
                f"it has {message.custom_ids()}"
            )
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled; a user cannot use it")
        kind = component["type"]
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": kind}
        if kind in SELECT_TYPES:
            data["values"] = list(values or [])
        elif values is not None:
            raise ValueError(f"component {custom_id!r} is not a select menu")
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
        self, user: FakeUser, opened_by: InteractionRecord, values: dict[str, Any]
    ) -> InteractionRecord:
        modal = opened_by.modal
        if modal is None:
            raise ValueError(f"interaction {opened_by.name!r} did not open a modal")
        components = [self._submitted(c, values) for c in modal.get("components") or []]
        known = {
            c["custom_id"]
            for c in walk_components(modal.get("components") or [])
            if "custom_id" in c
        }
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}")
        data = {"custom_id": modal["custom_id"], "components": components}
        record = self._register(
            MODAL_SUBMIT,
            user,
            opened_by.channel,
            data,
            name=modal["custom_id"],
            source=opened_by.source_message,
        )
        return await self._dispatch(record)

    def _submitted(self, component: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        kind = component.get("type")
        if kind == 1:
            children = [self._submitted(c, values) for c in component["components"]]
            return {"type": 1, "components": children}
        if kind == 18:
            result = {"type": 18, "component": self._submitted(component["component"], values)}
            if "id" in component:
                result["id"] = component["id"]
            return result
        submitted: dict[str, Any] = {"type": kind}
        if "id" in component:
            submitted["id"] = component["id"]
        custom_id = component.get("custom_id")
        if custom_id is not None:
            submitted["custom_id"] = custom_id
        if kind == COMPONENT_TEXT_INPUT:
            value = values.get(custom_id, component.get("value") or "")
            if component.get("required", True) and not value:
                raise ValueError(f"modal input {custom_id!r} is required")
            submitted["value"] = value
        elif kind in SELECT_TYPES:
            submitted["values"] = list(values.get(custom_id, []))
        elif kind == 10:
            submitted["content"] = component.get("content", "")
        return submitted

    # ------------------------------------------------------------------- serving the bot's side

    def _metadata(self, record: InteractionRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        owners = record.payload["authorizing_integration_owners"]
        meta: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": record.user.payload(),
            "authorizing_integration_owners": owners,
        }
        if record.type == APPLICATION_COMMAND:
            meta["name"] = record.name
            meta["command_type"] = 1
        if record.source_message is not None and record.type == MESSAGE_COMPONENT:
            meta["interacted_message_id"] = str(record.source_message.id)
        if record.original is not None:
            meta["original_response_message_id"] = str(record.original.id)
        legacy: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "name": record.name or "",
            "user": record.user.payload(),
        }
        return meta, legacy

    async def callback(
        self, interaction_id: int, token: str, body: ParsedBody, *, with_response: bool
    ) -> dict[str, Any] | None:
        record = self.records.get(interaction_id)
        if record is None or record.token != token or record.expired:
            raise errors.unknown_interaction()
        if record.callbacks:
            raise errors.already_acknowledged()
        elapsed = time.monotonic() - record.dispatched_at
        if self.ack_timeout is not None and elapsed > self.ack_timeout:
            raise errors.unknown_interaction()
        payload = body.payload
        kind = payload.get("type")
        if kind not in ALLOWED_CALLBACKS.get(record.type, set()):
            raise errors.invalid_form_body(
                errors.field_error(
                    "type",
                    "INTERACTION_CALLBACK_TYPE_INVALID",
                    f"Callback type {kind} is not valid for interaction type {record.type}",
                )
            )
        data = payload.get("data")
        state = self.state
        message: StoredMessage | None = None
        if kind == CALLBACK_CHANNEL_MESSAGE:
            message = await self._create(
                record,
                ParsedBody(data or {}, body.files, body.multipart),
                message_type=(
                    MESSAGE_CHAT_INPUT_COMMAND
                    if record.type == APPLICATION_COMMAND
                    else MESSAGE_DEFAULT
                ),
            )
            record.original = message
        elif kind == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
            flags = int((data or {}).get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL
            message = await self._create(
                record,
                ParsedBody({"flags": flags}),
                extra_flags=MESSAGE_FLAG_LOADING,
                message_type=(
                    MESSAGE_CHAT_INPUT_COMMAND
                    if record.type == APPLICATION_COMMAND
                    else MESSAGE_DEFAULT
                ),
            )
            record.original = message
        elif kind in (CALLBACK_DEFERRED_UPDATE, CALLBACK_UPDATE_MESSAGE):
            source = record.source_message
            if source is None:
                raise errors.invalid_form_body(
                    errors.field_error(
                        "type", "INTERACTION_CALLBACK_TYPE_INVALID", "No message to update"
                    )
                )
            if kind == CALLBACK_UPDATE_MESSAGE:
                await state.edit_message(source, ParsedBody(data or {}, body.files, body.multipart))
                message = source
            record.original = source
        elif kind == CALLBACK_AUTOCOMPLETE:
            choices = (data or {}).get("choices") or []
            if len(choices) > 25:
                raise errors.invalid_form_body(
                    errors.field_error(
                        "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                    )
                )
            for index, choice in enumerate(choices):
                # Discord: a choice's name is 1-100 characters, a string value at most 100.
                for key in ("name", "value"):
                    value = choice.get(key)
                    too_long = isinstance(value, str) and not 1 <= len(value) <= 100
                    if value is None or too_long:
                        raise errors.invalid_form_body(
                            errors.field_error(
                                f"data.choices.{index}.{key}",
                                "BASE_TYPE_BAD_LENGTH",
                                "Must be between 1 and 100 in length.",
                            )
                        )
        elif kind == CALLBACK_MODAL:
            modal = data or {}
            for key in ("custom_id", "title", "components"):
                if not modal.get(key):
                    error = errors.field_error(
                        f"data.{key}", "BASE_TYPE_REQUIRED", "This field is required"
                    )
                    raise errors.invalid_form_body(error)
        record.callbacks.append(CallbackRecord(kind, data, list(body.files.values()), elapsed))
        state.changes.notify()
        if not with_response:
            return None
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            interaction["response_message_id"] = str(message.id)
            interaction["response_message_loading"] = message.loading
            interaction["response_message_ephemeral"] = message.ephemeral
            resource["message"] = state.message_payload(message)
        return {"interaction": interaction, "resource": resource}

    async def _create(
        self,
        record: InteractionRecord,
        body: ParsedBody,
        *,
        extra_flags: int = 0,
        message_type: int = MESSAGE_DEFAULT,
    ) -> StoredMessage:
        meta, legacy = self._metadata(record)
        return await self.state.create_message(
            record.channel,
            self.state.bot,
            body,
            webhook_id=self.state.application_id,
            allow_ephemeral=True,
            extra_flags=extra_flags,
            message_type=message_type,
            interaction_metadata=meta,
            interaction=legacy,
        )

    def webhook(self, application_id: int, token: str) -> InteractionRecord:
        """The interaction behind `/webhooks/{application_id}/{token}`; dead tokens get 401."""
        if application_id != self.state.application_id:
            raise errors.unknown_webhook()
        record = self.by_token.get(token)
        if record is None:
            raise errors.invalid_webhook_token()
        if record.expired or time.monotonic() - record.dispatched_at > self.token_ttl:
            raise errors.invalid_webhook_token()
        return record

    async def followup(self, record: InteractionRecord, body: ParsedBody) -> StoredMessage:
        """Send a followup; the first one after a "thinking" defer fills that placeholder in."""
        if not record.acknowledged:
            raise errors.unknown_webhook()
        original = record.original
        response = record.response
        if (
            original is not None
            and original.loading
            and not original.deleted
            and response is not None
            and response.type == CALLBACK_DEFERRED_CHANNEL_MESSAGE
        ):
            message = await self.state.edit_message(original, body)
        else:
            message = await self._create(record, body)
        record.followups.append(message)
        self.state.changes.notify()
        return message

    def webhook_message(self, record: InteractionRecord, message_id: str) -> StoredMessage:
        if message_id == "@original":
            if record.original is None or record.original.deleted:
                raise errors.unknown_message()
            return record.original
        wanted = int(message_id) if message_id.isdigit() else -1
        for message in record.messages:
            if message.id == wanted and not message.deleted:
                return message
        raise errors.unknown_message()
