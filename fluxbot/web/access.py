"""Who is who in the studio: local mode (the person at the machine is the owner) or Discord login.

`role_of` is the one place that decides a web user's power, so it can follow the bot's
permission model when that grows (issue 12); today it is owner (admin) or member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from fluxbot.config import ConfigError, Settings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_OWNER_ID = 0
"""The owner's user id in local mode when FLUXBOT_ADMIN_IDS names nobody."""


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Identity:
    """The person behind a request: a Discord user id (the same as in the bot) and a name."""

    user_id: int
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.OWNER


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
    """Decides roles: the bot's owners (FLUXBOT_ADMIN_IDS and the application's owner or team)."""

    def __init__(self, settings: Settings, owner_ids: Iterable[int] = ()) -> None:
        self.settings = settings
        self.owner_ids = frozenset(owner_ids)

    def role_of(self, user_id: int) -> Role:
        if user_id in self.settings.admin_ids or user_id in self.owner_ids:
            return Role.OWNER
        if is_local_mode(self.settings) and user_id == local_owner_id(self.settings):
            return Role.OWNER
        return Role.MEMBER

    def identity(self, user_id: int, name: str = "") -> Identity:
        return Identity(user_id, name or str(user_id), self.role_of(user_id))
