"""/imagine end to end: slash command to posted PNG, controls, errors."""

from __future__ import annotations

import io

from PIL import Image

from fluxbot.images import read_parameters
from tests.bot.conftest import BotHarness, wait_for


def _result_messages(server, channel=None):  # type: ignore[no-untyped-def]
    return [m for m in server.messages(channel) if m.attachments and m.embeds]


async def test_imagine_posts_a_png_with_its_seed(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    record = await server.slash(
        server.alice, "imagine", {"prompt": "a red fox --ar 1:1", "seed": 42, "steps": 2}
    )
    result = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    png = result.attachments[0].data
    params = read_parameters(png)
    assert params["seed"] == 42 and params["prompt"] == "a red fox"
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1024, 1024)
    embed = result.embeds[0]
    assert any(f["name"] == "Seed" and f["value"] == "42" for f in embed["fields"])
    assert record.deferred
    await wait_for(lambda: len(result.reactions) >= 3, what="control reactions")
