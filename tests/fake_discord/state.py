"""The fake's source of truth: who exists, what was posted, which commands are registered.

REST handlers and the test controller both go through `DiscordState`, so what the bot posts and
what a test user does follow the same rules and produce the same gateway events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from . import errors, permissions
from .commands import CommandRegistry
from .models import (
    MESSAGE_DEFAULT,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    MESSAGE_FLAG_SUPPRESS_EMBEDS,
    MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS,
    MESSAGE_REPLY,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    StoredAttachment,
    StoredMessage,
    iso,
    utcnow,
)
from .multipart import ParsedBody, UploadedFile
from .snowflakes import SnowflakeGenerator
from .validation import validate_message
from .waiting import ChangeFeed

# Gateway intents, as bits of IDENTIFY's `intents`.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# What a message body may set; EPHEMERAL only through an interaction's webhook.
SETTABLE_FLAGS = MESSAGE_FLAG_SUPPRESS_EMBEDS | MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS
MAX_REACTIONS = 20
# How far back Discord looks for an enforced nonce ("the past few minutes").
NONCE_WINDOW = timedelta(minutes=5)

EmitFn = Callable[[str, dict[str, Any], int], Awaitable[None]]


async def _no_emit(event: str, data: dict[str, Any], intent: int) -> None:
    return None


class DiscordState:
    """Users, guilds, channels, messages, attachments and application commands."""

    def __init__(self, *, attachment_size_limit: int) -> None:
        self.ids = SnowflakeGenerator()
        self.changes = ChangeFeed()
        self.attachment_size_limit = attachment_size_limit
        self.public_base = ""
        self.emit: EmitFn = _no_emit
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.dm_channels: dict[int, FakeChannel] = {}  # recipient's id -> the bot's DM with them
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.bot = self.add_user("fluxbot", bot=True)
        self.application_id = self.bot.id
        self.owner = self.add_user("owner")
        self.commands = CommandRegistry(self.ids, self.application_id, self.changes)

    # ----------------------------------------------------------------------------------- world

    def add_user(self, username: str, *, bot: bool = False) -> FakeUser:
        user = FakeUser(id=self.ids.next(), username=username, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner: FakeUser) -> FakeGuild:
        guild = FakeGuild(id=self.ids.next(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = FakeRole(guild.id, "@everyone", permissions.EVERYONE_DEFAULT)
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild: FakeGuild, name: str, perms: int, **kwargs: Any) -> FakeRole:
        role = FakeRole(self.ids.next(), name, perms, position=len(guild.roles), **kwargs)
        guild.roles[role.id] = role
        return role

    def add_member(self, guild: FakeGuild, user: FakeUser, roles: Iterable[FakeRole] = ()) -> None:
        guild.members[user.id] = FakeMember(user=user, role_ids=[r.id for r in roles])

    def add_channel(self, guild: FakeGuild, name: str, *, nsfw: bool = False) -> FakeChannel:
        channel = FakeChannel(
            id=self.ids.next(),
            name=name,
            guild_id=guild.id,
            position=len(guild.channels),
            nsfw=nsfw,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def get_user(self, user_id: int) -> FakeUser:
        user = self.users.get(user_id)
        if user is None:
            raise errors.unknown_user()
        return user

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM with `user`, opened on first use (`POST /users/@me/channels`)."""
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = FakeChannel(id=self.ids.next(), name="", guild_id=None, recipient=user)
            self.dm_channels[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def shares_a_guild_with_the_bot(self, user: FakeUser) -> bool:
        return any(user.id in g.members and self.bot.id in g.members for g in self.guilds.values())

    def get_channel(self, channel_id: int) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise errors.unknown_channel()
        return channel

    def guild_of(self, channel: FakeChannel) -> FakeGuild:
        """A guild channel's guild (interactions and roles exist only in guild channels)."""
        if channel.guild_id is None:
            raise ValueError(f"channel {channel.id} is a DM: it has no guild")
        return self.guilds[channel.guild_id]

    def permissions_for(self, user_id: int, channel: FakeChannel) -> int:
        return permissions.compute_permissions(self.guild_of(channel), user_id)

    def require(self, channel: FakeChannel, user_id: int, needed: int) -> None:
        """Raise Discord's 403 when `user_id` lacks any of `needed` in `channel`.

        A DM has no permissions: its two users may do anything in it, except that Discord
        refuses a message to a recipient who shares no server with the bot.
        """
        if channel.recipient is not None:
            if user_id not in (self.bot.id, channel.recipient.id):
                raise errors.missing_access()
            sending = needed & permissions.SEND_MESSAGES
            if sending and not self.shares_a_guild_with_the_bot(channel.recipient):
                raise errors.cannot_send_to_user()
            return
        granted = self.permissions_for(user_id, channel)
        if not granted & permissions.VIEW_CHANNEL:
            raise errors.missing_access()
        if needed & ~granted:
            raise errors.missing_permissions()

    def member_payload(self, guild: FakeGuild, user: FakeUser, **kwargs: Any) -> dict[str, Any]:
        member = guild.members.get(user.id) or FakeMember(user=user, role_ids=[])
        return member.payload(**kwargs)

    # -------------------------------------------------------------------------------- messages

    def get_message(self, channel_id: int, message_id: int) -> StoredMessage:
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id:
            raise errors.unknown_message()
        return message

    def store_file(
        self, channel: FakeChannel, filename: str, data: bytes, *, ephemeral: bool
    ) -> StoredAttachment:
        """Keep an upload and serve it at its CDN url (`GET /attachments/...`)."""
        attachment_id = self.ids.next()
        url = f"{self.public_base}/attachments/{channel.id}/{attachment_id}/{quote(filename)}"
        attachment = StoredAttachment(attachment_id, filename, data, url, ephemeral=ephemeral)
        self.attachments[attachment.id] = attachment
        return attachment

    def _resolve_attachments(
        self,
        channel: FakeChannel,
        payload: dict[str, Any],
        files: dict[int, UploadedFile],
        existing: list[StoredAttachment],
        *,
        ephemeral: bool,
    ) -> list[StoredAttachment]:
        """Apply `attachments` + uploads: listed ids are kept (or filled from files[id])."""

        def store(upload: UploadedFile, entry: dict[str, Any] | None = None) -> StoredAttachment:
            filename = (entry or {}).get("filename") or upload.filename
            return self.store_file(channel, filename, upload.data, ephemeral=ephemeral)

        entries = payload.get("attachments")
        if entries is None:
            return [*existing, *(store(files[i]) for i in sorted(files))]
        kept = {a.id: a for a in existing}
        result: list[StoredAttachment] = []
        for entry in entries:
            raw_id = int(entry["id"])
            if raw_id in files:
                result.append(store(files.pop(raw_id), entry))
            elif raw_id in kept:
                result.append(kept[raw_id])
        return result + [store(files[i]) for i in sorted(files)]

    def _reference(
        self, channel: FakeChannel, reference: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """A reply's `message_reference`; Discord refuses one to a message it cannot find."""
        if not reference or reference.get("message_id") is None:
            return None
        target = self.messages.get(int(reference["message_id"]))
        if target is None or target.deleted or target.channel_id != channel.id:
            if not reference.get("fail_if_not_exists", True):
                return None
            raise errors.invalid_form_body(
                errors.field_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            )
        return {
            "type": 0,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **guild_id_field(target.guild_id),
        }

    @staticmethod
    def _snapshot(payload: dict[str, Any], attachments: list[StoredAttachment]) -> dict[str, Any]:
        snapshot = {k: v for k, v in payload.items() if k != "attachments"}
        snapshot["attachments"] = [a.filename for a in attachments]
        return snapshot

    async def create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: ParsedBody,
        *,
        webhook_id: int | None = None,
        allow_ephemeral: bool = False,
        extra_flags: int = 0,
        message_type: int | None = None,
        interaction_metadata: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Validate and store a new message, then dispatch MESSAGE_CREATE (unless ephemeral).

        With `enforce_nonce`, a message by the same author in the same channel (a DM too) with
        the same nonce in the past few minutes is returned instead of creating another; webhook
        executions (followups) take no nonce.
        """
        payload = body.payload
        nonce = payload.get("nonce") if webhook_id is None else None
        if payload.get("enforce_nonce") and nonce is not None:
            since = utcnow() - NONCE_WINDOW
            for earlier in reversed(list(self.messages.values())):
                if (
                    earlier.channel_id == channel.id
                    and earlier.author.id == author.id
                    and earlier.nonce == str(nonce)
                    and earlier.created_at >= since
                    and not earlier.deleted
                ):
                    return earlier
        requested = int(payload.get("flags") or 0)
        flags = (requested & SETTABLE_FLAGS) | extra_flags
        if allow_ephemeral:
            flags |= requested & MESSAGE_FLAG_EPHEMERAL
        ephemeral = bool(flags & MESSAGE_FLAG_EPHEMERAL)
        attachments = self._resolve_attachments(
            channel, payload, dict(body.files), [], ephemeral=ephemeral
        )
        if not flags & MESSAGE_FLAG_LOADING:
            validate_message(payload, len(attachments), creating=True)
        reference = self._reference(channel, payload.get("message_reference"))
        if message_type is None:
            message_type = MESSAGE_REPLY if reference else MESSAGE_DEFAULT
        message = StoredMessage(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=str(payload.get("content") or ""),
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=attachments,
            flags=flags,
            type=message_type,
            message_reference=reference,
            webhook_id=webhook_id,
            interaction_metadata=interaction_metadata,
            nonce=None if nonce is None else str(nonce),
        )
        message.revisions.append(self._snapshot(payload, attachments))
        self.messages[message.id] = message
        if not ephemeral:
            channel.last_message_id = message.id
            await self.emit_message("MESSAGE_CREATE", message)
        self.changes.notify()
        return message

    async def edit_message(self, message: StoredMessage, body: ParsedBody) -> StoredMessage:
        """Apply an edit (PATCH semantics: only the keys present change), then MESSAGE_UPDATE."""
        payload = body.payload
        attachments = message.attachments
        if "attachments" in payload or body.files:
            attachments = self._resolve_attachments(
                self.get_channel(message.channel_id),
                payload,
                dict(body.files),
                message.attachments,
                ephemeral=message.ephemeral,
            )
        validate_message(payload, len(attachments), creating=False)
        content = str(payload["content"] or "") if "content" in payload else message.content
        embeds = list(payload["embeds"] or []) if "embeds" in payload else message.embeds
        components = message.components
        if "components" in payload:
            components = list(payload["components"] or [])
        if not (content or embeds or attachments or components):
            raise errors.empty_message()
        if not message.loading:
            message.edited_at = utcnow()
        message.content, message.embeds = content, embeds
        message.components, message.attachments = components, attachments
        message.flags &= ~MESSAGE_FLAG_LOADING
        message.revisions.append(self._snapshot(payload, attachments))
        if not message.ephemeral:
            await self.emit_message("MESSAGE_UPDATE", message)
        self.changes.notify()
        return message

    async def delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            data = {
                "id": str(message.id),
                "channel_id": str(message.channel_id),
                **guild_id_field(message.guild_id),
            }
            await self.emit("MESSAGE_DELETE", data, _message_intent(message))
        self.changes.notify()

    async def emit_message(self, event: str, message: StoredMessage) -> None:
        data = self.message_payload(message)
        if message.webhook_id is None and message.guild_id is not None:
            guild = self.guilds[message.guild_id]
            data["member"] = self.member_payload(guild, message.author, with_user=False)
        await self.emit(event, data, _message_intent(message))

    # ------------------------------------------------------------------------------- reactions

    @staticmethod
    def check_emoji(raw: str) -> str:
        """A reaction route's emoji must be the character ('🔁'): the fake guild has no custom
        emojis ('name:id'), and Discord refuses ASCII shortcodes like ':repeat:' too."""
        if not raw or raw.isascii() or ":" in raw:
            raise errors.unknown_emoji()
        return raw

    async def add_reaction(self, message: StoredMessage, user: FakeUser, raw_emoji: str) -> None:
        """Add `user`'s reaction (a repeat is a no-op, as Discord's 204 is)."""
        emoji = self.check_emoji(raw_emoji)
        users = message.reactions.get(emoji)
        if users is not None and user.id in users:
            return
        if users is None:
            if len(message.reactions) >= MAX_REACTIONS:
                raise errors.max_reactions()
            users = message.reactions[emoji] = []
        users.append(user.id)
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": {"id": None, "name": emoji},
            "message_author_id": str(message.author.id),
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        intent = INTENT_DIRECT_MESSAGE_REACTIONS
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            data["member"] = self.member_payload(self.guilds[message.guild_id], user)
            intent = INTENT_GUILD_MESSAGE_REACTIONS
        await self.emit("MESSAGE_REACTION_ADD", data, intent)
        self.changes.notify()

    # -------------------------------------------------------------------------------- payloads

    def message_payload(self, message: StoredMessage) -> dict[str, Any]:
        """The message object discord.py parses."""
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            **guild_id_field(message.guild_id),
            "author": message.author.payload(),
            "content": message.content,
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at) if message.edited_at else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload() for a in message.attachments],
            "embeds": message.embeds,
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
            "components": message.components,
        }
        if message.reactions:
            data["reactions"] = [
                {
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.bot.id in users,
                    "me_burst": False,
                    "burst_colors": [],
                    "emoji": {"id": None, "name": emoji},
                }
                for emoji, users in message.reactions.items()
            ]
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.application_id)
        if message.interaction_metadata is not None:
            data["interaction_metadata"] = message.interaction_metadata
        if message.message_reference is not None:
            data["message_reference"] = message.message_reference
        return data


def guild_id_field(guild_id: int | None) -> dict[str, str]:
    """`guild_id` as message and event payloads carry it: absent for a DM."""
    return {} if guild_id is None else {"guild_id": str(guild_id)}


def _message_intent(message: StoredMessage) -> int:
    return INTENT_DIRECT_MESSAGES if message.guild_id is None else INTENT_GUILD_MESSAGES
