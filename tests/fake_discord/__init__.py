"""A real local stand-in for Discord (REST + gateway) that the real discord.py client talks to.

    server = FakeDiscord()                      # guild, #general, #nsfw-art, admin/alice/bob
    await server.start()                        # 127.0.0.1, ephemeral port
    # the bot: Route.BASE = server.api_base; DiscordWebSocket.DEFAULT_GATEWAY = server.gateway_url
    record = await server.slash(server.alice, "imagine", {"prompt": "a fox", "seed": 42})
    await record.wait_response()                # the ack (type 5 when deferred)
    [result] = await record.wait_followups()    # StoredMessage: content, attachments' bytes, ...
    await server.react(server.alice, result, "🔁")

Modules: `server` (the controller), `state` + `models` + `commands` (the world), `rest`,
`gateway`, `interactions` + `options` (interaction payloads and their webhooks), `multipart`,
`validation` (Discord's limits), `discord_py` (pointing a bare discord.py client at the fake).
"""

from .discord_py import point_discord_py_at
from .errors import DiscordError
from .gateway import DispatchRecord
from .interactions import CallbackRecord, InteractionRecord
from .models import (
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    Overwrite,
    StoredAttachment,
    StoredMessage,
)
from .options import Upload
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
