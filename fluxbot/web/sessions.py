"""Signed, expiring session cookies and the CSRF token bound to each session.

The cookie holds only the user id, name and a random session id, signed with a key kept in the
data dir (so logins survive a restart); `max_age` is checked on every request, and the cookie
itself is HTTP-only, SameSite=Lax and expires with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "fluxbot_session"
LOGIN_COOKIE = "fluxbot_login"
"""Short-lived cookie that carries the OAuth `state` from /login to /auth/callback."""
LOGIN_MAX_AGE_S = 600
KEY_FILE = "web-session.key"


def load_or_create_key(data_dir: Path) -> bytes:
    """The signing key, created once (readable by the owner only) and kept across restarts."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.replace(temp, path)
    return key


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    name: str
    sid: str


class SessionCodec:
    """Signs and checks session and login-state cookies with one key (separate salts)."""

    def __init__(self, key: bytes, max_age_s: float) -> None:
        self._key = key
        self.max_age_s = max_age_s
        self._sessions = URLSafeTimedSerializer(key, salt="fluxbot-session")
        self._logins = URLSafeTimedSerializer(key, salt="fluxbot-login")

    def issue(self, user_id: int, name: str) -> str:
        return self._sessions.dumps({"u": str(user_id), "n": name, "s": secrets.token_urlsafe(16)})

    def read(self, cookie: str | None) -> Session | None:
        """The session of a valid, unexpired cookie; None for anything else."""
        data = self._load(self._sessions, cookie, self.max_age_s)
        if not isinstance(data, dict):
            return None
        try:
            return Session(int(data["u"]), str(data.get("n", "")), str(data["s"]))
        except (KeyError, TypeError, ValueError):
            return None

    def csrf_token(self, session: Session) -> str:
        """A token only this session's pages know: forms that change state must send it back."""
        return hmac.new(self._key, f"csrf:{session.sid}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")

    def issue_login(self, state: str) -> str:
        return self._logins.dumps({"state": state})

    def login_state(self, cookie: str | None) -> str | None:
        data = self._load(self._logins, cookie, LOGIN_MAX_AGE_S)
        return data.get("state") if isinstance(data, dict) else None

    @staticmethod
    def _load(serializer: URLSafeTimedSerializer, cookie: str | None, max_age: float) -> Any:
        if not cookie:
            return None
        try:
            return serializer.loads(cookie, max_age=round(max_age))
        except BadSignature:  # includes SignatureExpired
            return None
