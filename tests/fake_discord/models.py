"""The fake's world: users, guilds, roles, channels, messages and attachments.

Each model knows the JSON shape discord.py parses for it (`payload()`); anything that needs to look
other objects up (a message's author member, its referenced message) is built in `state.py`.
"""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHANNEL_TEXT = 0
CHANNEL_DM = 1

MESSAGE_FLAG_SUPPRESS_EMBEDS = 1 << 2
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12

MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20


def iso(moment: datetime) -> str:
    return moment.isoformat()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class FakeUser:
    """A Discord user; `bot=True` for the bot account itself."""

    id: int
    username: str
    bot: bool = False
    locale: str = "en-US"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data

    def me_payload(self) -> dict[str, Any]:
        """The `GET /users/@me` shape, which adds account details to the public user."""
        return {**self.payload(), "verified": True, "mfa_enabled": False, "locale": self.locale}


@dataclass(eq=False)
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "hoist": False,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class FakeMember:
    user: FakeUser
    role_ids: list[int]
    joined_at: datetime = field(default_factory=utcnow)

    def payload(self, *, permissions: int | None = None, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": None,
            "roles": [str(r) for r in self.role_ids],
            "joined_at": iso(self.joined_at),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class FakeChannel:
    """A guild text channel, or the bot's DM with one user (`recipient`, no guild)."""

    id: int
    name: str
    guild_id: int | None
    position: int = 0
    nsfw: bool = False
    recipient: FakeUser | None = None
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.recipient is not None

    @property
    def type(self) -> int:
        return CHANNEL_DM if self.is_dm else CHANNEL_TEXT

    def payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        last = str(self.last_message_id) if self.last_message_id else None
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "last_message_id": last}
        if self.recipient is not None:
            data["recipients"] = [self.recipient.payload()]
        else:
            data |= {
                "guild_id": str(self.guild_id),
                "name": self.name,
                "position": self.position,
                "permission_overwrites": [],
                "nsfw": self.nsfw,
                "topic": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
            }
        data["flags"] = 0
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    locale: str = "en-US"

    def payload(self) -> dict[str, Any]:
        """The GUILD_CREATE object."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": self.locale,
            "features": [],
            "system_channel_flags": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "joined_at": iso(utcnow()),
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "members": [m.payload() for m in self.members.values()],
            "channels": [c.payload() for c in self.channels.values()],
            "threads": [],
            "presences": [],
            "voice_states": [],
        }


def sniff_image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height of an image upload (Discord reports them), or (None, None)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None, None


@dataclass(eq=False)
class StoredAttachment:
    """An uploaded file: the bytes as received, plus the metadata Discord reports."""

    id: int
    filename: str
    data: bytes
    url: str
    ephemeral: bool = False
    width: int | None = field(init=False, default=None)
    height: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.width, self.height = sniff_image_size(self.data)

    @property
    def content_type(self) -> str:
        """Discord infers the type from the name; discord.py always uploads octet-stream."""
        guessed, _ = mimetypes.guess_type(self.filename)
        return guessed or "application/octet-stream"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "flags": 0,
        }
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        if self.ephemeral:
            data["ephemeral"] = True
        return data


@dataclass(eq=False)
class StoredMessage:
    """A message as the fake stores it; `revisions` keeps every payload that changed it."""

    id: int
    channel_id: int
    guild_id: int | None  # None in a DM
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = MESSAGE_DEFAULT
    message_reference: dict[str, Any] | None = None
    webhook_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    nonce: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    edited_at: datetime | None = None
    deleted: bool = False
    reactions: dict[str, list[int]] = field(default_factory=dict)  # emoji -> user ids
    revisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MESSAGE_FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred interaction's "thinking…" placeholder."""
        return bool(self.flags & MESSAGE_FLAG_LOADING)

    @property
    def interaction_id(self) -> int | None:
        """The id of the interaction this message answers, if any."""
        meta = self.interaction_metadata
        return int(meta["id"]) if meta else None

    def custom_ids(self) -> list[str]:
        """Every component custom_id on the message, in display order."""
        return [c["custom_id"] for c in leaf_components(self.components) if "custom_id" in c]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next(
            (c for c in leaf_components(self.components) if c.get("custom_id") == custom_id), None
        )


def leaf_components(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The buttons and text inputs inside a list of action rows."""
    return [child for row in rows for child in row.get("components") or []]
