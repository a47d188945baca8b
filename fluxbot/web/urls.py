"""Where browsers reach the studio, and the OAuth2 redirect URI to register with Discord.

Free of Gradio, so `fluxbot invite` can print the redirect URI without the web extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fluxbot.config import Settings

DEFAULT_PORT = 7860


@dataclass(frozen=True, slots=True)
class PublicUrl:
    """Where browsers reach the studio: FLUXBOT_WEB_BASE_URL, else http://host:port."""

    base: str

    @property
    def path(self) -> str:
        return urlsplit(self.base).path.rstrip("/")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secure(self) -> bool:
        return self.base.startswith("https://")

    def at(self, path: str) -> str:
        """A path under the studio, for redirects (relative to the host)."""
        return f"{self.path}/{path.lstrip('/')}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/auth/callback"


def public_url(host: str, port: int, base_url: str | None) -> PublicUrl:
    if base_url:
        return PublicUrl(base_url.rstrip("/"))
    shown = f"[{host}]" if ":" in host else host
    return PublicUrl(f"http://{shown}:{port}")


def studio_url(settings: Settings) -> PublicUrl:
    """The studio's public URL from the settings (the default port when none is set)."""
    return public_url(settings.web_host, settings.web_port or DEFAULT_PORT, settings.web_base_url)
