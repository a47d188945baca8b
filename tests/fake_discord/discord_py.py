"""Point the installed discord.py at the fake, for tests that run a bare `commands.Bot`.

discord.py has no public setting for either URL: REST goes to the class attribute
`discord.http.Route.BASE`, and a non-sharded `Client` connects to
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (it never calls `GET /gateway/bot`; only
`AutoShardedClient` does). Both are process-wide, so this restores them on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import discord.gateway
import discord.http
import yarl


@contextmanager
def point_discord_py_at(api_base: str, gateway_url: str) -> Iterator[None]:
    """Send discord.py's REST calls to `api_base` and its gateway to `gateway_url` meanwhile."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
