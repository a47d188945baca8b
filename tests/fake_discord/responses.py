"""The bot's side of an interaction: its callback, its followups and its `@original` message.

Discord's rules are checked here: one answer, within 3 seconds, of a type the interaction allows;
followups only after that answer and while the 15-minute token lives; autocomplete choices and
modals within their limits.
"""

from __future__ import annotations

import time
from typing import Any

from . import errors
from .interactions import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    MESSAGE_COMPONENT,
    CallbackRecord,
    InteractionRecord,
    InteractionService,
)
from .models import (
    MESSAGE_CHAT_INPUT_COMMAND,
    MESSAGE_DEFAULT,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    StoredMessage,
)
from .multipart import ParsedBody
from .state import DiscordState
from .validation import MAX_CHOICES


class ResponseService:
    """Serves `/interactions/{id}/{token}/callback` and `/webhooks/{app}/{token}`."""

    def __init__(
        self,
        state: DiscordState,
        interactions: InteractionService,
        *,
        ack_timeout: float | None,
        token_ttl: float,
    ) -> None:
        self.state = state
        self.interactions = interactions
        self.ack_timeout = ack_timeout
        self.token_ttl = token_ttl

    def _metadata(self, record: InteractionRecord) -> dict[str, Any]:
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
        return meta

    async def callback(
        self, interaction_id: int, token: str, body: ParsedBody, *, with_response: bool
    ) -> dict[str, Any] | None:
        """The bot's answer to an interaction: once, within the deadline, of an allowed type."""
        record = self.interactions.records.get(interaction_id)
        if record is None or record.token != token or record.expired:
            raise errors.unknown_interaction()
        if record.callbacks:
            raise errors.already_acknowledged()
        elapsed = time.monotonic() - record.dispatched_at
        if self.ack_timeout is not None and elapsed > self.ack_timeout:
            raise errors.unknown_interaction()
        kind = body.payload.get("type")
        if kind not in ALLOWED_CALLBACKS[record.type]:
            raise _invalid(
                "type",
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"Callback type {kind} is not valid for interaction type {record.type}",
            )
        data = body.payload.get("data") or {}
        message: StoredMessage | None = None
        if kind in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE):
            if kind == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
                flags = int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL
                body, extra_flags = ParsedBody({"flags": flags}), MESSAGE_FLAG_LOADING
            else:
                body, extra_flags = ParsedBody(data, body.files), 0
            command = record.type == APPLICATION_COMMAND
            message_type = MESSAGE_CHAT_INPUT_COMMAND if command else MESSAGE_DEFAULT
            message = await self._create(record, body, extra_flags, message_type)
            record.original = message
        elif kind in (CALLBACK_UPDATE_MESSAGE, CALLBACK_DEFERRED_UPDATE):
            source = record.source_message
            if source is None:  # a modal opened by a slash command has no message to update
                raise _invalid("type", "INTERACTION_CALLBACK_TYPE_INVALID", "No message to update")
            if kind == CALLBACK_UPDATE_MESSAGE:
                message = await self.state.edit_message(source, ParsedBody(data, body.files))
            record.original = source
        elif kind == CALLBACK_AUTOCOMPLETE:
            _check_choices(data.get("choices") or [])
        elif kind == CALLBACK_MODAL:
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise _invalid(f"data.{key}", "BASE_TYPE_REQUIRED", "This field is required")
        record.callbacks.append(CallbackRecord(kind, data, list(body.files.values()), elapsed))
        self.state.changes.notify()
        if not with_response:
            return None
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            interaction["response_message_id"] = str(message.id)
            interaction["response_message_loading"] = message.loading
            interaction["response_message_ephemeral"] = message.ephemeral
            resource["message"] = self.state.message_payload(message)
        return {"interaction": interaction, "resource": resource}

    async def _create(
        self,
        record: InteractionRecord,
        body: ParsedBody,
        extra_flags: int = 0,
        message_type: int = MESSAGE_DEFAULT,
    ) -> StoredMessage:
        return await self.state.create_message(
            record.channel,
            self.state.bot,
            body,
            webhook_id=self.state.application_id,
            allow_ephemeral=True,
            extra_flags=extra_flags,
            message_type=message_type,
            interaction_metadata=self._metadata(record),
        )

    def webhook(self, application_id: int, token: str) -> InteractionRecord:
        """The interaction behind `/webhooks/{application_id}/{token}`; dead tokens get 401."""
        if application_id != self.state.application_id:
            raise errors.unknown_webhook()
        record = self.interactions.by_token.get(token)
        if record is None or record.expired:
            raise errors.invalid_webhook_token()
        if time.monotonic() - record.dispatched_at > self.token_ttl:
            raise errors.invalid_webhook_token()
        return record

    async def followup(self, record: InteractionRecord, body: ParsedBody) -> StoredMessage:
        """Send a followup; the first one after a "thinking" defer fills that placeholder in."""
        if not record.acknowledged:
            raise errors.unknown_webhook()
        original = record.original
        if original is not None and original.loading and not original.deleted:
            message = await self.state.edit_message(original, body)
        else:
            message = await self._create(record, body)
        record.followups.append(message)
        self.state.changes.notify()
        return message

    def original(self, record: InteractionRecord) -> StoredMessage:
        """`/webhooks/{app}/{token}/messages/@original`, the only one fluxbot reads or edits."""
        if record.original is None or record.original.deleted:
            raise errors.unknown_message()
        return record.original


def _invalid(path: str, code: str, message: str) -> errors.DiscordError:
    return errors.invalid_form_body(errors.field_error(path, code, message))


def _check_choices(choices: list[dict[str, Any]]) -> None:
    """Discord: at most 25 autocomplete choices, each name 1-100 characters, a string value
    at most 100."""
    if len(choices) > MAX_CHOICES:
        raise _invalid("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for index, choice in enumerate(choices):
        for key in ("name", "value"):
            value = choice.get(key)
            if value is None or (isinstance(value, str) and not 1 <= len(value) <= 100):
                raise _invalid(
                    f"data.choices.{index}.{key}",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
