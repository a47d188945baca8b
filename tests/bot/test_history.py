"""A user's own data through the bot: /history, /show, /seed, /settings, /forget-me, /animate."""

from __future__ import annotations

import io

from PIL import Image

from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import BotHarness, results, wait_for


async def _answer(server, user, name, options=None, **kw):  # type: ignore[no-untyped-def]
    record = await server.slash(user, name, options or {}, **kw)
    await wait_for(lambda: record.messages and not record.messages[-1].loading, what=f"/{name}")
    return record


async def _imagine(server, user, **options):  # type: ignore[no-untyped-def]
    count = len(results(server))
    await server.slash(user, "imagine", {"steps": 1, **options})
    await wait_for(lambda: len(results(server)) > count, within_s=60, what="a result")
    return results(server)[-1]


async def test_seed_profile_fixed_then_history_and_show(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    record = await _answer(server, server.alice, "seed", {"profile": "fixed", "value": 1234})
    assert "fixed:1234" in record.messages[-1].content
    first = await _imagine(server, server.alice, prompt="a red barn")
    assert read_parameters(first.attachments[0].data)["seed"] == 1234
    for i in range(9):
        await _imagine(server, server.alice, prompt=f"barn {i}")
    history = await _answer(server, server.alice, "history")
    page = history.messages[-1]
    assert history.ephemeral and "Page 1 of 2" in page.embeds[0]["footer"]["text"]
    older = next(c for c in page.custom_ids() if c.endswith(":next"))
    click = await server.click(server.alice, page, older)
    await wait_for(lambda: "Page 2 of 2" in page.embeds[0]["footer"]["text"], what="page 2")
    assert click.acknowledged
    refused = await _answer(server, server.bob, "history", {"user": server.alice.id})
    assert "your own history" in refused.messages[-1].content
    job_id = first.embeds[0]["fields"][-1]["value"].strip("`")
    before = len(results(server))
    await server.slash(server.bob, "show", {"job_id": job_id})
    await wait_for(lambda: len(results(server)) > before, what="the re-posted result")
    assert results(server)[-1].attachments[0].data == first.attachments[0].data
    seeds = await _answer(server, server.alice, "seed")
    assert "1234" in seeds.messages[-1].content


async def test_settings_change_the_defaults(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    reply = await _answer(server, server.alice, "settings", {"aspect": "16:9", "steps": 2})
    assert "16:9" in reply.messages[-1].content
    result = await _imagine(server, server.alice, prompt="a wide valley")
    with Image.open(io.BytesIO(result.attachments[0].data)) as image:
        assert image.width > image.height
    assert read_parameters(result.attachments[0].data)["steps"] == 1  # the option wins


async def test_forget_me_deletes_everything_after_confirmation(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    await _imagine(server, server.alice, prompt="to be forgotten")
    ask = await _answer(server, server.alice, "forget-me")
    confirm = ask.messages[-1]
    (button,) = confirm.custom_ids()
    forged = await server.click(server.bob, confirm, button)
    await forged.wait_response(within_s=3.0)
    await wait_for(lambda: forged.messages, what="the refusal")
    assert "Only the person who asked" in forged.messages[-1].content
    assert (await bot.store.jobs.for_user(server.alice.id)).total == 1
    await server.click(server.alice, confirm, button)
    await wait_for(lambda: "Deleted" in confirm.content, what="the confirmation")
    assert (await bot.store.jobs.for_user(server.alice.id)).total == 0
    assert not list((harness.data_dir / "images").rglob("*.png"))


async def test_animate_posts_a_gif(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    before = len(results(server))
    await server.slash(
        server.alice,
        "animate",
        {"prompt": "a morphing cloud", "frames": 3, "seed": 1, "seed_to": 2},
    )
    await wait_for(lambda: len(results(server)) > before, within_s=90, what="the GIF")
    gif = results(server)[-1].attachments[0]
    assert gif.filename.endswith(".gif") and gif.data.startswith(b"GIF89a")
    assert "1 → 2" in str(results(server)[-1].embeds[0]["fields"])
