"""Permission bits and Discord's resolution of a member's roles (fluxbot's channels carry no
overwrites, so the base permissions are the channel's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import FakeGuild

ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31

ALL = (1 << 51) - 1

EVERYONE_DEFAULT = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)

BOT_ROLE_DEFAULT = EVERYONE_DEFAULT | MANAGE_MESSAGES


def compute_permissions(guild: FakeGuild, user_id: int) -> int:
    """The owner and Administrators have everything; others, the union of their roles."""
    if user_id == guild.owner_id:
        return ALL
    member = guild.members.get(user_id)
    if member is None:
        return 0
    perms = guild.roles[guild.id].permissions
    for role_id in member.role_ids:
        perms |= guild.roles[role_id].permissions
    return ALL if perms & ADMINISTRATOR else perms
