"""A real local stand-in for Discord (REST + gateway) that the real discord.py client talks to.

Start a `FakeDiscord`, point the bot at `api_base` / `gateway_url`, then drive it as Discord's
users would and assert on what it posted. See `server.FakeDiscord` for the controller API.
"""

from .discord_py import point_discord_py_at
from .errors import DiscordError
from .gateway import DispatchRecord
from .interactions import CallbackRecord, InteractionRecord, Upload
from .models import (
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    Overwrite,
    StoredAttachment,
    StoredMessage,
)
from .rest import RecordedRequest
from .server import DEFAULT_TOKEN, FakeDiscord, MiB

__all__ = [
    "DEFAULT_TOKEN",
    "CallbackRecord",
    "DiscordError",
    "DispatchRecord",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeRole",
    "FakeUser",
    "InteractionRecord",
    "MiB",
    "Overwrite",
    "RecordedRequest",
    "StoredAttachment",
    "StoredMessage",
    "Upload",
    "point_discord_py_at",
]
