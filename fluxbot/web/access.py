"""Who is who in the studio: local mode (the person at the machine is the owner) or Discord login.

A web user becomes an `Actor` of the one permission model (fluxbot/app/permissions.py), and
every studio action asks that model. Bot owners (the application's owner or team members, and
FLUXBOT_ADMIN_IDS; in local mode also the person at the machine) are owners here as in Discord.
The studio belongs to no server (Discord login with the `identify` scope says nothing about
one's servers), so a server manager acts here as a member: their powers stay in their server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fluxbot.app.permissions import Actor, can_control_bot
from fluxbot.config import ConfigError, Settings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_OWNER_ID = 0
"""The owner's user id in local mode when FLUXBOT_ADMIN_IDS names nobody."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The person behind a request: their `Actor` (a Discord user id, the same as in the bot,
    acting outside any server) and a name to show."""

    actor: Actor
    name: str

    @property
    def user_id(self) -> int:
        return self.actor.user_id

    @property
    def is_admin(self) -> bool:
        """Whether the Admin page (the whole bot's queue, devices and bans) is theirs."""
        return can_control_bot(self.actor).allowed


def oauth_configured(settings: Settings) -> bool:
    secret = settings.discord_client_secret
    return settings.discord_client_id is not None and bool(secret and secret.get_secret_value())


def is_local_mode(settings: Settings) -> bool:
    """On the loopback address with no OAuth settings: no login, the user is the owner."""
    return settings.web_host in LOCAL_HOSTS and not oauth_configured(settings)


def check_web_settings(settings: Settings) -> None:
    """Refuse to serve an open GPU to the network: a non-local host needs OAuth settings."""
    if settings.web_host not in LOCAL_HOSTS and not oauth_configured(settings):
        raise ConfigError(
            f"FLUXBOT_WEB_HOST={settings.web_host!r} is not valid without Discord login: set "
            "FLUXBOT_DISCORD_CLIENT_ID and FLUXBOT_DISCORD_CLIENT_SECRET, or use 127.0.0.1"
        )


def local_owner_id(settings: Settings) -> int:
    """Local mode's user: the first admin id (so history is shared with Discord), else 0."""
    return min(settings.admin_ids) if settings.admin_ids else LOCAL_OWNER_ID


class Access:
    """Makes web users into actors: the bot's owners are FLUXBOT_ADMIN_IDS and the application's
    owner or team (`owner_ids`, from Discord's application info), as for the bot."""

    def __init__(self, settings: Settings, owner_ids: Iterable[int] = ()) -> None:
        self.settings = settings
        self.owner_ids = frozenset(owner_ids)

    def is_owner(self, user_id: int) -> bool:
        if user_id in self.settings.admin_ids or user_id in self.owner_ids:
            return True
        return is_local_mode(self.settings) and user_id == local_owner_id(self.settings)

    def actor_of(self, user_id: int) -> Actor:
        """The web user as the permission model sees them: outside any server, so no manager."""
        return Actor(user_id=user_id, owner=self.is_owner(user_id), guild_id=None, manager=False)

    def identity(self, user_id: int, name: str = "") -> Identity:
        return Identity(self.actor_of(user_id), name or str(user_id))
