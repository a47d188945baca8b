"""Discord's OAuth2 for a web login: the token exchange and `/users/@me` with a Bearer token.

There is no authorize page: a test plays the user who clicks "Authorize" by calling
`authorize(user, redirect_uri=...)`, which returns the code Discord would put in the redirect.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from aiohttp import web

from .errors import DiscordError
from .models import FakeUser

CLIENT_SECRET = "fake-client-secret"
TOKEN_TTL_S = 604_800


@dataclass(frozen=True)
class _Grant:
    user: FakeUser
    redirect_uri: str
    scope: str


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


class FakeOAuth:
    """Codes are single-use and bound to their redirect URI; tokens map to users."""

    def __init__(self, client_id: int, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, FakeUser] = {}

    def authorize(self, user: FakeUser, *, redirect_uri: str, scope: str = "identify") -> str:
        code = secrets.token_urlsafe(16)
        self._codes[code] = _Grant(user, redirect_uri, scope)
        return code

    @staticmethod
    def _client(request: web.Request) -> tuple[str, str]:
        """The client id and secret of HTTP Basic auth (the web studio's way; Discord also takes
        them in the form)."""
        header = request.headers.get("Authorization", "")
        try:
            raw = base64.b64decode(header.removeprefix("Basic ")).decode()
        except ValueError:
            return "", ""
        client_id, _, secret = raw.partition(":")
        return client_id, secret

    async def token(self, request: web.Request) -> web.Response:
        """`POST /oauth2/token` (form-encoded, as Discord requires)."""
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            return _oauth_error(400, "invalid_request", "form body required")
        form = {k: str(v) for k, v in (await request.post()).items()}
        client_id, secret = self._client(request)
        if client_id != str(self.client_id) or secret != self.client_secret:
            return _oauth_error(401, "invalid_client", "Invalid client")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant", 'Invalid "code" in request.')
        token = secrets.token_urlsafe(24)
        self._tokens[token] = grant.user
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL_S,
                "refresh_token": secrets.token_urlsafe(24),
                "scope": grant.scope,
            }
        )

    def bearer_user(self, request: web.Request) -> FakeUser:
        """The user of a `Bearer` token, or Discord's 401."""
        header = request.headers.get("Authorization", "")
        user = self._tokens.get(header[len("Bearer ") :]) if header.startswith("Bearer ") else None
        if user is None:
            raise DiscordError(401, 0, "401: Unauthorized")
        return user
