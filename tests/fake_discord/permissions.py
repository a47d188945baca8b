"""Permission bits and Discord's resolution order (base roles, then channel overwrites)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import FakeChannel, FakeGuild

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38

ALL = (1 << 51) - 1

EVERYONE_DEFAULT = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

BOT_ROLE_DEFAULT = EVERYONE_DEFAULT | MANAGE_MESSAGES

OVERWRITE_ROLE = 0
OVERWRITE_MEMBER = 1


DM_DEFAULT = EVERYONE_DEFAULT & ~(MANAGE_MESSAGES | MENTION_EVERYONE)


def compute_permissions(guild: FakeGuild | None, user_id: int, channel: FakeChannel | None) -> int:
    """Resolve a member's permissions the way Discord does; DMs get the DM defaults."""
    if guild is None:
        return DM_DEFAULT
    if user_id == guild.owner_id:
        return ALL
    member = guild.members.get(user_id)
    if member is None:
        return 0
    everyone = guild.roles[guild.id]
    perms = everyone.permissions
    for role_id in member.role_ids:
        role = guild.roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    if perms & ADMINISTRATOR:
        return ALL
    if channel is None:
        return perms
    overwrites = {(o.target_id, o.type): o for o in channel.overwrites}
    everyone_ow = overwrites.get((guild.id, OVERWRITE_ROLE))
    if everyone_ow is not None:
        perms = (perms & ~everyone_ow.deny) | everyone_ow.allow
    allow = deny = 0
    for role_id in member.role_ids:
        role_ow = overwrites.get((role_id, OVERWRITE_ROLE))
        if role_ow is not None:
            allow |= role_ow.allow
            deny |= role_ow.deny
    perms = (perms & ~deny) | allow
    member_ow = overwrites.get((user_id, OVERWRITE_MEMBER))
    if member_ow is not None:
        perms = (perms & ~member_ow.deny) | member_ow.allow
    if not perms & VIEW_CHANNEL:
        return 0
    return perms
