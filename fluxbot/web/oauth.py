"""Discord OAuth2 (authorization-code flow, scope `identify`) through FLUXBOT_DISCORD_API_BASE.

The token exchange is `POST {api}/oauth2/token` and the user is `GET {api}/users/@me`; tests
point the API base at the repository's Discord stand-in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx

from fluxbot.config import Settings

log = logging.getLogger(__name__)

SCOPE = "identify"
TIMEOUT_S = 10.0


class OAuthFailed(Exception):
    """Discord refused the code or could not be reached; `str()` is fit to show the user."""


@dataclass(frozen=True, slots=True)
class DiscordUser:
    id: int
    name: str


def authorize_base(api_base: str) -> str:
    """Discord's authorize page lives beside the API (`https://discord.com/oauth2/authorize`)."""
    parts = urlsplit(api_base.rstrip("/"))
    path = parts.path
    marker = path.find("/api")
    root = path[:marker] if marker >= 0 else path
    return f"{parts.scheme}://{parts.netloc}{root}/oauth2/authorize"


class DiscordOAuth:
    def __init__(self, settings: Settings, redirect_uri: str) -> None:
        assert settings.discord_client_id is not None and settings.discord_client_secret
        self.client_id = settings.discord_client_id
        self._secret = settings.discord_client_secret.get_secret_value()
        self.api_base = settings.discord_api_base.rstrip("/")
        self.redirect_uri = redirect_uri

    def authorize_url(self, state: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "response_type": "code",
                "scope": SCOPE,
                "redirect_uri": self.redirect_uri,
                "state": state,
                "prompt": "none",
            }
        )
        return f"{authorize_base(self.api_base)}?{query}"

    async def user_for_code(self, code: str) -> DiscordUser:
        """Exchange the code for a token and ask Discord who it belongs to."""
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            try:
                token = await client.post(
                    f"{self.api_base}/oauth2/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": self.redirect_uri,
                    },
                    auth=(str(self.client_id), self._secret),
                )
                if token.status_code != 200:
                    log.info("Discord refused the OAuth code: %s %s", token.status_code, token.text)
                    raise OAuthFailed("Discord did not accept this login; please try again.")
                access = token.json().get("access_token")
                if not access:
                    raise OAuthFailed("Discord's answer had no access token; please try again.")
                me = await client.get(
                    f"{self.api_base}/users/@me", headers={"Authorization": f"Bearer {access}"}
                )
                if me.status_code != 200:
                    log.info("Discord /users/@me answered %s", me.status_code)
                    raise OAuthFailed("Discord did not tell us who you are; please try again.")
                data = me.json()
                name = data.get("global_name") or data.get("username") or str(data["id"])
                return DiscordUser(int(data["id"]), str(name))
            except httpx.HTTPError as exc:
                log.warning("Discord OAuth request failed: %s", exc)
                raise OAuthFailed("Discord could not be reached; please try again.") from None
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("Discord OAuth answer not understood: %s", exc)
                raise OAuthFailed(
                    "Discord's answer was not understood; please try again."
                ) from None


async def application_owner_ids(settings: Settings) -> frozenset[int]:
    """The application's owner (or its team's members) via the bot token; empty without one."""
    token = settings.discord_token.get_secret_value() if settings.discord_token else ""
    if not token:
        return frozenset()
    url = f"{settings.discord_api_base.rstrip('/')}/oauth2/applications/@me"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            answer = await client.get(url, headers={"Authorization": f"Bot {token}"})
        answer.raise_for_status()
        data = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("could not read the application's owner: %s", exc)
        return frozenset()
    team = data.get("team") or {}
    members = [m.get("user", {}).get("id") for m in team.get("members", [])]
    owner = (data.get("owner") or {}).get("id")
    return frozenset(int(i) for i in [owner, *members] if i)
