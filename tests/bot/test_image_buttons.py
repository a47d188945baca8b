"""Image operations end to end on the fake Discord: the buttons under results, the remix
modal, /imagine with an uploaded image, privacy that follows the parent, and restarts."""

from __future__ import annotations

import io

from PIL import Image

from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import BotHarness, results, wait_for
from tests.fake_discord.options import Upload


def _png(size: tuple[int, int], colour: tuple[int, int, int] = (30, 140, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def _result(harness: BotHarness, user, **options):  # type: ignore[no-untyped-def]
    server = harness.server
    before = {m.id for m in results(server)}
    await server.slash(user, "imagine", {"steps": 1, **options})
    return await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id not in before, within_s=90
    )


async def _next_result(harness: BotHarness, *seen):  # type: ignore[no-untyped-def]
    ids = {m.id for m in seen} | {m.id for m in results(harness.server)}
    return await harness.server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id not in ids, within_s=120
    )


from tests.bot.test_imagine import job_of as _job  # noqa: E402


def _answer(record) -> str:  # type: ignore[no-untyped-def]
    """What the bot said to an interaction: a followup, or its original response's text."""
    if record.followups and record.followups[0].content:
        return record.followups[0].content
    return record.original.content if record.original and record.original.content else ""


def _field(message, name: str) -> str | None:  # type: ignore[no-untyped-def]
    return next((f["value"] for f in message.embeds[0]["fields"] if f["name"] == name), None)


async def test_vary_button_and_lineage_then_buttons_survive_a_restart(
    harness: BotHarness,
) -> None:
    await harness.start()
    server = harness.server
    original = await _result(harness, server.alice, prompt="a lighthouse --ar 1:1", seed=5)
    parent = await _job(harness, original)
    ids = original.custom_ids()
    for op in ("vary1", "vary2", "remix", "up", "z15", "z2", "pl", "pr", "pu", "pd"):
        assert f"flux:img:{op}:{parent.public_id}:0" in ids
    click = await server.click(server.bob, original, f"flux:img:vary1:{parent.public_id}:0")
    varied = await _next_result(harness, original)
    await wait_for(lambda: click.followups, what="the button's answer")
    assert click.ephemeral and "Vary (strength 0.35) of" in click.followups[0].content
    assert varied.message_reference
    assert int(varied.message_reference["message_id"]) == original.id
    params = read_parameters(varied.attachments[0].data)
    assert params["edit"]["operation"] == "vary" and params["edit"]["parent"] == parent.public_id
    assert params["edit"]["strength"] == 0.35 and params["seed"] != 5
    assert _field(varied, "From") == f"vary (strength 0.35) of `{parent.public_id}`"
    child = await _job(harness, varied)
    assert (child.parent_id, child.operation, child.user_id) == (parent.id, "vary", server.bob.id)
    assert child.source_sha256 == parent.images[0].sha256
    assert varied.attachments[0].data != original.attachments[0].data

    # After a restart the old result's buttons still work; zoom keeps the size.
    await harness.stop()
    await harness.start()
    await server.click(server.alice, original, f"flux:img:z2:{parent.public_id}:0")
    zoomed = await _next_result(harness, original, varied)
    assert read_parameters(zoomed.attachments[0].data)["edit"]["operation"] == "zoom"
    with Image.open(io.BytesIO(zoomed.attachments[0].data)) as image:
        assert image.size == (1024, 1024)
    history = await server.slash(server.alice, "history", {})
    await wait_for(lambda: history.followups or history.original, what="the history")
    page = (history.original or history.followups[0]).embeds[0]
    assert any("zoom out ×2 of" in field["value"] for field in page["fields"])


async def test_remix_modal_prefilled_then_checked_and_run(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    original = await _result(harness, server.alice, prompt="a red fox", seed=11)
    parent = await _job(harness, original)
    opened = await server.click(server.alice, original, f"flux:img:remix:{parent.public_id}:0")
    modal = await wait_for(lambda: opened.modal, what="the remix modal")
    assert modal is not None and modal["custom_id"] == f"flux:remix:{parent.public_id}:0"
    inputs = {
        c["custom_id"]: c
        for row in modal["components"]
        for c in row.get("components", [row.get("component", {})])
        if "custom_id" in c
    }
    assert inputs["prompt"]["value"] == "a red fox" and inputs["strength"]["value"] == "0.6"
    bad = await server.submit_modal(server.alice, opened, {"strength": "2", "prompt": "a cat"})
    refusal = await wait_for(lambda: _answer(bad), what="the refusal")
    assert "strength" in refusal and "0.05 to 1" in refusal
    assert len(await harness.bot.store.jobs.children(parent.id)) == 0  # nothing queued
    good = await server.submit_modal(
        server.alice, opened, {"prompt": "a blue fox", "strength": "0.5", "start": "scratch"}
    )
    remixed = await _next_result(harness, original)
    params = read_parameters(remixed.attachments[0].data)
    assert params["prompt"] == "a blue fox" and params["seed"] == 11  # same seed, from scratch
    assert params["edit"] == {"operation": "remix", "parent": parent.public_id, "parent_index": 0}
    assert "remix" in (await wait_for(lambda: _answer(good), what="the answer")).lower()


async def test_a_stranger_cannot_use_a_private_result(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    record = await server.slash(
        server.alice, "imagine", {"prompt": "a secret garden", "steps": 1, "private": True}
    )
    message = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds and m.ephemeral), within_s=90
    )
    assert record.ephemeral
    parent = await harness.bot.store.jobs.by_message_id(message.id)
    if parent is None:  # ephemeral results are found through the job list
        parent = (await harness.bot.store.jobs.for_user(server.alice.id)).jobs[0]
    assert parent.private
    for op in ("vary1", "remix", "z2"):
        click = await server.click(server.bob, message, f"flux:img:{op}:{parent.public_id}:0")
        answer = await wait_for(lambda click=click: _answer(click), what="the refusal")
        assert "is private" in answer and click.modal is None
    shown = await server.slash(server.bob, "show", {"job_id": parent.public_id})
    assert "private" in await wait_for(lambda: _answer(shown), what="the /show refusal")
    assert await harness.bot.store.jobs.children(parent.id) == []
    # The owner may, and the child is private too.
    await server.click(server.alice, message, f"flux:img:vary2:{parent.public_id}:0")
    await wait_for(
        lambda: len([m for m in server.messages() if m.ephemeral and m.attachments]) >= 2,
        within_s=120,
        what="the private variation",
    )
    [child] = await harness.bot.store.jobs.children(parent.id)
    assert child.private and child.operation == "vary"


async def test_imagine_with_an_uploaded_image(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    store = harness.bot.store
    bad = await server.slash(
        server.alice, "imagine", {"prompt": "a fox", "image": Upload("notes.png", b"not a png")}
    )
    text = await wait_for(lambda: _answer(bad), what="the refusal")
    assert "image" in text and "PNG, JPEG or WebP" in text
    # Commands defer first; the refusal then comes as a private followup.
    assert bad.ephemeral or (bad.followups and bad.followups[0].ephemeral)
    lone = await server.slash(server.alice, "imagine", {"prompt": "a fox", "strength": 0.5})
    assert "strength" in await wait_for(lambda: _answer(lone), what="the refusal")
    assert (await store.jobs.for_user(server.alice.id)).total == 0  # nothing was queued

    upload = _png((400, 300))
    made = await _result(
        harness, server.alice, prompt="a fox", image=Upload("photo.png", upload), strength=0.5
    )
    params = read_parameters(made.attachments[0].data)
    assert params["edit"]["operation"] == "image" and params["edit"]["strength"] == 0.5
    with Image.open(io.BytesIO(made.attachments[0].data)) as image:
        assert abs(image.width / image.height - 4 / 3) < 0.05
    assert _field(made, "From") == "image (strength 0.5) from an uploaded image"
    job = await _job(harness, made)
    assert await store.sources.load(server.alice.id, job.source_sha256) == upload


async def test_several_images_get_u_and_v_buttons(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    original = await _result(harness, server.alice, prompt="two cats", seed=3, count=2)
    parent = await _job(harness, original)
    ids = original.custom_ids()
    assert (
        f"flux:img:up:{parent.public_id}:1" in ids and f"flux:img:vary1:{parent.public_id}:1" in ids
    )
    assert f"flux:img:z2:{parent.public_id}:0" not in ids
    await server.click(server.bob, original, f"flux:img:vary1:{parent.public_id}:1")
    varied = await _next_result(harness, original)
    params = read_parameters(varied.attachments[0].data)
    assert params["edit"]["parent_index"] == 1
    assert params["edit"]["source_sha256"] == parent.images[1].sha256
    assert _field(varied, "From") == f"vary (strength 0.35) of `{parent.public_id}` image 2"
