"""A real local stand-in for Discord (REST + gateway) that the real discord.py client talks to.

    server = FakeDiscord()                      # guild, #general, #nsfw-art, admin/alice/bob
    await server.start()                        # 127.0.0.1, ephemeral port
    # the bot: Route.BASE = server.api_base; DiscordWebSocket.DEFAULT_GATEWAY = server.gateway_url
    record = await server.slash(server.alice, "imagine", {"prompt": "a fox", "seed": 42})
    await record.wait_response()                # the ack (type 5 when deferred)
    result = await server.wait_for_message(lambda m: bool(m.attachments))  # a StoredMessage
    await server.react(server.alice, result, "🔁")

It fakes what fluxbot sends and receives, no more (a fake grows with the code under test): one
bot in guilds of text channels, globally synced slash commands, interactions (commands,
autocomplete, buttons, modals) answered through their webhooks, channel messages with files,
embeds, buttons and replies, the bot's DMs (private results whose interaction token expired),
the bot's own reactions and users' reactions, OAuth2 for the web studio, and injected REST
faults. It answers what breaks Discord's rules the way Discord does.

Modules: `server` (the controller), `state` + `models` + `commands` (the world), `rest`,
`gateway`, `interactions` + `options` (interaction payloads and their webhooks), `multipart`,
`validation` (Discord's limits), `oauth`, `discord_py` (pointing a bare discord.py client at the
fake).
"""

from .discord_py import point_discord_py_at
from .errors import DiscordError
from .interactions import CallbackRecord, InteractionRecord
from .models import FakeChannel, FakeGuild, FakeRole, FakeUser, StoredAttachment, StoredMessage
from .options import Upload
from .rest import RecordedRequest
from .server import DEFAULT_TOKEN, FakeDiscord, MiB

__all__ = [
    "DEFAULT_TOKEN",
    "CallbackRecord",
    "DiscordError",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeRole",
    "FakeUser",
    "InteractionRecord",
    "MiB",
    "RecordedRequest",
    "StoredAttachment",
    "StoredMessage",
    "Upload",
    "point_discord_py_at",
]
