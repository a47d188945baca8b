"""What the bot needs in a server, written once: the invite URL is computed from this list.

Each permission is here because a code path uses it; no privileged intent is needed (see
`fluxbot.bot.client.bot_intents`).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, urlencode

import discord

OAUTH2_AUTHORIZE = "https://discord.com/oauth2/authorize"
SCOPES = ("bot", "applications.commands")
# discord.Permissions attribute -> why the bot needs it.
BOT_PERMISSIONS: dict[str, str] = {
    "view_channel": "see the channels where it is used",
    "send_messages": "post results after the 15-minute interaction token has expired",
    "embed_links": "show each result's prompt, seed and size in an embed",
    "attach_files": "upload the images and GIFs",
    "add_reactions": "put the 🔁 🎲 ❌ reactions under each result",
    "read_message_history": "react to its own results (Discord requires it to add reactions)",
}


def bot_permissions() -> discord.Permissions:
    """The permissions the invite asks for, from `BOT_PERMISSIONS`."""
    return discord.Permissions(**dict.fromkeys(BOT_PERMISSIONS, True))


def describe_permissions() -> str:
    return ", ".join(name.replace("_", " ") for name in BOT_PERMISSIONS)


def invite_url(application_id: int) -> str:
    """The OAuth2 URL a server admin opens to add the bot with its slash commands."""
    query = urlencode(
        {
            "client_id": application_id,
            "scope": " ".join(SCOPES),
            "permissions": bot_permissions().value,
        },
        quote_via=quote,
    )
    return f"{OAUTH2_AUTHORIZE}?{query}"


def application_id_from_token(token: str) -> int | None:
    """A bot token's first part is its user id in base64, which is the application id for
    every bot created since 2016; None when the token does not have that shape."""
    first = token.strip().split(".")[0]
    if not first:
        return None
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(decoded) if decoded.isdigit() else None
