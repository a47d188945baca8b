"""The fake's source of truth: who exists, what was posted, which commands are registered.

REST handlers and the test controller both go through `DiscordState`, so a message posted by the
bot and one "typed" by a test user follow the same rules and produce the same gateway events.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from . import errors, permissions
from .commands import CommandRegistry
from .models import (
    CHANNEL_DM,
    CHANNEL_TEXT,
    MESSAGE_DEFAULT,
    MESSAGE_FLAG_COMPONENTS_V2,
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
    Overwrite,
    ReactionState,
    StoredAttachment,
    StoredMessage,
    guess_content_type,
    iso,
    sniff_image_size,
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

SETTABLE_FLAGS = (
    MESSAGE_FLAG_SUPPRESS_EMBEDS | MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS | MESSAGE_FLAG_COMPONENTS_V2
)
USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
MAX_REACTIONS = 20
# How far back Discord looks for an enforced nonce ("the past few minutes").
NONCE_WINDOW = timedelta(minutes=5)

EmitFn = Callable[..., Awaitable[None]]


async def _no_emit(event: str, data: dict[str, Any], **_: Any) -> None:
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
        self.messages: dict[int, StoredMessage] = {}
        self.attachments: dict[int, StoredAttachment] = {}
        self.dm_by_user: dict[int, FakeChannel] = {}
        self.bot = self.add_user("fluxbot", bot=True)
        self.application_id = self.bot.id
        self.owner = self.add_user("owner")
        self.commands = CommandRegistry(self.ids, self.application_id, self.changes)

    # ----------------------------------------------------------------------------------- world

    def add_user(self, username: str, *, bot: bool = False, locale: str = "en-US") -> FakeUser:
        user = FakeUser(id=self.ids.next(), username=username, bot=bot, locale=locale)
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

    def add_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        nsfw: bool = False,
        overwrites: Iterable[Overwrite] = (),
        topic: str | None = None,
    ) -> FakeChannel:
        channel = FakeChannel(
            id=self.ids.next(),
            name=name,
            type=CHANNEL_TEXT,
            guild_id=guild.id,
            position=len(guild.channels),
            nsfw=nsfw,
            topic=topic,
            overwrites=list(overwrites),
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM with `user`, created on first use (as `POST /users/@me/channels` does)."""
        channel = self.dm_by_user.get(user.id)
        if channel is None:
            channel = FakeChannel(
                id=self.ids.next(), name="", type=CHANNEL_DM, recipients=[user], guild_id=None
            )
            self.dm_by_user[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def get_user(self, user_id: int) -> FakeUser:
        user = self.users.get(user_id)
        if user is None:
            raise errors.unknown_user()
        return user

    def get_channel(self, channel_id: int) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise errors.unknown_channel()
        return channel

    def get_guild(self, guild_id: int) -> FakeGuild:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise errors.unknown_guild()
        return guild

    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    def permissions_for(self, user_id: int, channel: FakeChannel) -> int:
        return permissions.compute_permissions(self.guild_of(channel), user_id, channel)

    def require(self, channel: FakeChannel, user_id: int, needed: int) -> None:
        """Raise Discord's 403 when `user_id` lacks any of `needed` in `channel`."""
        if channel.is_dm:
            if user_id == self.bot.id or any(u.id == user_id for u in channel.recipients):
                return
            raise errors.missing_access()
        granted = self.permissions_for(user_id, channel)
        if not granted & permissions.VIEW_CHANNEL:
            raise errors.missing_access()
        if needed & ~granted:
            raise errors.missing_permissions()

    def member_payload(self, guild: FakeGuild, user: FakeUser, **kwargs: Any) -> dict[str, Any]:
        member = guild.members.get(user.id)
        if member is None:
            member = FakeMember(user=user, role_ids=[])
        return member.payload(**kwargs)

    # -------------------------------------------------------------------------------- messages

    def get_message(self, channel_id: int, message_id: int) -> StoredMessage:
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id:
            raise errors.unknown_message()
        return message

    def channel_messages(
        self, channel_id: int, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[StoredMessage]:
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id
            and (include_ephemeral or not m.ephemeral)
            and (include_deleted or not m.deleted)
        ]

    def attachment_url(self, channel_id: int, attachment_id: int, filename: str) -> str:
        return f"{self.public_base}/attachments/{channel_id}/{attachment_id}/{quote(filename)}"

    def _store_file(
        self,
        channel: FakeChannel,
        upload: UploadedFile,
        entry: dict[str, Any] | None,
        *,
        ephemeral: bool,
    ) -> StoredAttachment:
        filename = (entry or {}).get("filename") or upload.filename
        width, height = sniff_image_size(upload.data)
        attachment_id = self.ids.next()
        attachment = StoredAttachment(
            id=attachment_id,
            filename=filename,
            data=upload.data,
            content_type=guess_content_type(filename),
            url=self.attachment_url(channel.id, attachment_id, filename),
            description=(entry or {}).get("description"),
            ephemeral=ephemeral,
            width=width,
            height=height,
        )
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
        entries = payload.get("attachments")
        if entries is None:
            uploaded = [
                self._store_file(channel, files[i], None, ephemeral=ephemeral)
                for i in sorted(files)
            ]
            return [*existing, *uploaded]
        result: list[StoredAttachment] = []
        used: set[int] = set()
        by_id = {a.id: a for a in existing}
        for entry in entries:
            raw_id = int(entry["id"])
            if raw_id in files and raw_id not in used:
                used.add(raw_id)
                result.append(self._store_file(channel, files[raw_id], entry, ephemeral=ephemeral))
            elif raw_id in by_id:
                result.append(by_id[raw_id])
        for index in sorted(set(files) - used):
            result.append(self._store_file(channel, files[index], None, ephemeral=ephemeral))
        return result

    def _mentions(
        self, content: str, allowed: dict[str, Any] | None
    ) -> tuple[list[int], list[int], bool]:
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse", []))
        allowed_users = {int(u) for u in (allowed or {}).get("users", [])}
        allowed_roles = {int(r) for r in (allowed or {}).get("roles", [])}
        users: list[int] = []
        for raw in USER_MENTION.findall(content):
            user_id = int(raw)
            known = user_id in self.users and user_id not in users
            if known and ("users" in parse or user_id in allowed_users):
                users.append(user_id)
        roles = [
            int(r)
            for r in ROLE_MENTION.findall(content)
            if "roles" in parse or int(r) in allowed_roles
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        return users, roles, everyone

    def _reference(
        self, channel: FakeChannel, reference: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if not reference or reference.get("message_id") is None:
            return None
        target = self.messages.get(int(reference["message_id"]))
        if (
            target is None
            or target.deleted
            or target.channel_id != int(reference.get("channel_id", channel.id))
        ):
            if reference.get("fail_if_not_exists", True):
                raise errors.invalid_form_body(
                    errors.field_error(
                        "message_reference",
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
                )
            return None
        return {
            "type": int(reference.get("type", 0)),
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
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
        interaction: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Validate and store a new message, then dispatch MESSAGE_CREATE (unless ephemeral).

        With `enforce_nonce`, a channel message by the same author with the same nonce in the
        past few minutes is returned instead of creating another; webhook executions (followups)
        take no nonce.
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
        if allow_ephemeral and requested & MESSAGE_FLAG_EPHEMERAL:
            flags |= MESSAGE_FLAG_EPHEMERAL
        ephemeral = bool(flags & MESSAGE_FLAG_EPHEMERAL)
        loading = bool(flags & MESSAGE_FLAG_LOADING)
        attachments = self._resolve_attachments(
            channel, payload, body.files, [], ephemeral=ephemeral
        )
        if not loading:
            validate_message(payload, len(attachments), creating=True)
        reference = self._reference(channel, payload.get("message_reference"))
        content = str(payload.get("content") or "")
        allowed = payload.get("allowed_mentions")
        mention_ids, role_ids, everyone = self._mentions(content, allowed)
        if reference is not None and (allowed is None or allowed.get("replied_user", True)):
            target = self.messages[int(reference["message_id"])]
            if target.author.id not in mention_ids:
                mention_ids.append(target.author.id)
        if message_type is None:
            message_type = MESSAGE_REPLY if reference else MESSAGE_DEFAULT
        message = StoredMessage(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            attachments=attachments,
            flags=flags,
            type=message_type,
            tts=bool(payload.get("tts")),
            message_reference=reference,
            allowed_mentions=allowed,
            mention_ids=mention_ids,
            mention_role_ids=role_ids,
            mention_everyone=everyone,
            webhook_id=webhook_id,
            application_id=self.application_id if webhook_id else None,
            interaction_metadata=interaction_metadata,
            interaction=interaction,
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
        channel = self.get_channel(message.channel_id)
        if "attachments" in payload or body.files:
            attachments = self._resolve_attachments(
                channel, payload, body.files, message.attachments, ephemeral=message.ephemeral
            )
        else:
            attachments = message.attachments
        validate_message(payload, len(attachments), creating=False)
        content = message.content
        if "content" in payload:
            content = str(payload["content"] or "")
        embeds = list(payload["embeds"] or []) if "embeds" in payload else message.embeds
        components = (
            list(payload["components"] or []) if "components" in payload else message.components
        )
        if not (content or embeds or attachments or components):
            raise errors.empty_message()
        was_loading = message.loading
        message.content = content
        message.embeds = embeds
        message.components = components
        message.attachments = attachments
        if "allowed_mentions" in payload:
            message.allowed_mentions = payload["allowed_mentions"]
        if "content" in payload or "allowed_mentions" in payload:
            mentions = self._mentions(content, message.allowed_mentions)
            message.mention_ids, message.mention_role_ids, message.mention_everyone = mentions
        if payload.get("flags") is not None:
            suppress = int(payload["flags"]) & MESSAGE_FLAG_SUPPRESS_EMBEDS
            message.flags = (message.flags & ~MESSAGE_FLAG_SUPPRESS_EMBEDS) | suppress
        message.flags &= ~MESSAGE_FLAG_LOADING
        if not was_loading:
            message.edited_at = utcnow()
        message.revisions.append(self._snapshot(payload, attachments))
        if not message.ephemeral:
            await self.emit_message("MESSAGE_UPDATE", message)
        self.changes.notify()
        return message

    async def delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id:
                data["guild_id"] = str(message.guild_id)
            await self.emit("MESSAGE_DELETE", data, intent=self._message_intent(message))
        self.changes.notify()

    def _message_intent(self, message: StoredMessage) -> int:
        return INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES

    async def emit_message(self, event: str, message: StoredMessage) -> None:
        # Without MESSAGE_CONTENT the gateway blanks content, except for the bot's own messages,
        # DMs, and messages that mention the bot.
        exempt = (
            message.author.id == self.bot.id
            or message.guild_id is None
            or self.bot.id in message.mention_ids
        )
        await self.emit(
            event,
            self.message_payload(message, for_gateway=True),
            intent=self._message_intent(message),
            redact_content=not exempt,
        )

    # ------------------------------------------------------------------------------- reactions

    @staticmethod
    def parse_emoji(raw: str) -> tuple[str, dict[str, Any]]:
        """Map a reaction route's emoji ('🔁' or 'name:id') to its key and emoji object.

        The fake guild has no custom emojis, so 'name:id' is always Unknown Emoji; so are ASCII
        shortcodes like ':repeat:', which Discord rejects too (the bot must send the character).
        """
        if not raw or raw.isascii() or ":" in raw:
            raise errors.unknown_emoji()
        return raw, {"id": None, "name": raw}

    async def add_reaction(self, message: StoredMessage, user: FakeUser, raw_emoji: str) -> bool:
        """Add `user`'s reaction; False when it was already there (Discord answers 204 anyway)."""
        key, emoji = self.parse_emoji(raw_emoji)
        state = message.reactions.get(key)
        if state is not None and user.id in state.user_ids:
            return False
        if state is None:
            if len(message.reactions) >= MAX_REACTIONS:
                raise errors.max_reactions()
            state = message.reactions[key] = ReactionState(emoji=emoji)
        state.user_ids.append(user.id)
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": dict(emoji),
            "message_author_id": str(message.author.id),
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        if message.guild_id:
            guild = self.guilds[message.guild_id]
            data["guild_id"] = str(message.guild_id)
            data["member"] = self.member_payload(guild, user)
        await self.emit("MESSAGE_REACTION_ADD", data, intent=self._reaction_intent(message))
        self.changes.notify()
        return True

    async def remove_reaction(self, message: StoredMessage, user_id: int, raw_emoji: str) -> None:
        key, emoji = self.parse_emoji(raw_emoji)
        state = message.reactions.get(key)
        if state is None or user_id not in state.user_ids:
            return
        state.user_ids.remove(user_id)
        if not state.user_ids:
            del message.reactions[key]
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": dict(emoji),
            "burst": False,
            "type": 0,
        }
        if message.guild_id:
            data["guild_id"] = str(message.guild_id)
        await self.emit("MESSAGE_REACTION_REMOVE", data, intent=self._reaction_intent(message))
        self.changes.notify()

    async def clear_reactions(self, message: StoredMessage, raw_emoji: str | None = None) -> None:
        data: dict[str, Any] = {
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
        }
        if message.guild_id:
            data["guild_id"] = str(message.guild_id)
        if raw_emoji is None:
            message.reactions.clear()
            event = "MESSAGE_REACTION_REMOVE_ALL"
        else:
            key, emoji = self.parse_emoji(raw_emoji)
            message.reactions.pop(key, None)
            data["emoji"] = dict(emoji)
            event = "MESSAGE_REACTION_REMOVE_EMOJI"
        await self.emit(event, data, intent=self._reaction_intent(message))
        self.changes.notify()

    @staticmethod
    def _reaction_intent(message: StoredMessage) -> int:
        if message.guild_id:
            return INTENT_GUILD_MESSAGE_REACTIONS
        return INTENT_DIRECT_MESSAGE_REACTIONS

    # -------------------------------------------------------------------------------- payloads

    def message_payload(
        self, message: StoredMessage, *, for_gateway: bool = False
    ) -> dict[str, Any]:
        """The message object discord.py parses; gateway copies also carry the author member."""
        guild = self.guilds.get(message.guild_id) if message.guild_id else None
        mentions = []
        for user_id in message.mention_ids:
            user = self.users[user_id]
            mention = user.payload()
            if for_gateway and guild is not None and user_id in guild.members:
                mention["member"] = guild.members[user_id].payload(with_user=False)
            mentions.append(mention)
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": message.author.payload(),
            "content": message.content,
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at) if message.edited_at else None,
            "tts": message.tts,
            "mention_everyone": message.mention_everyone,
            "mentions": mentions,
            "mention_roles": [str(r) for r in message.mention_role_ids],
            "attachments": [a.payload() for a in message.attachments],
            "embeds": message.embeds,
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
            "components": message.components,
        }
        if message.guild_id:
            data["guild_id"] = str(message.guild_id)
        if for_gateway and guild is not None and message.webhook_id is None:
            data["member"] = self.member_payload(guild, message.author, with_user=False)
        if message.reactions:
            data["reactions"] = [
                {
                    "count": len(r.user_ids),
                    "count_details": {"burst": 0, "normal": len(r.user_ids)},
                    "me": self.bot.id in r.user_ids,
                    "me_burst": False,
                    "burst_colors": [],
                    "emoji": r.emoji,
                }
                for r in message.reactions.values()
            ]
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(message.application_id)
        if message.interaction_metadata is not None:
            data["interaction_metadata"] = message.interaction_metadata
        if message.interaction is not None:
            data["interaction"] = message.interaction
        if message.message_reference is not None:
            data["message_reference"] = message.message_reference
            target = self.messages.get(int(message.message_reference["message_id"]))
            data["referenced_message"] = (
                self.message_payload(target) if target and not target.deleted else None
            )
        return data
