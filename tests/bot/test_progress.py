"""A job faster than the status-edit interval still shows its progress and preview in Discord."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fluxbot.bot.cogs import results as results_cog
from fluxbot.engine.pipeline import FluxRunner
from tests.bot.conftest import BotHarness
from tests.fake_discord.rest import RecordedRequest


async def test_a_job_faster_than_the_edit_interval_still_shows_its_first_step(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An hour between edits makes every job "fast" (on an H200 a whole image takes ~0.45 s,
    # under the 1.5 s interval): before, the queue-position edit used up the interval and the
    # user saw no step and no preview before the result.
    monkeypatch.setattr(results_cog, "EDIT_INTERVAL_S", 3600.0)
    # The job holds after its first step until that step's edit is done: the tiny model's three
    # steps would otherwise all end (and the finish drop the unread progress) while the
    # "being made" edit is on its way on a slow machine. On a card the edit is the faster one.
    shown = threading.Event()
    step_callback = FluxRunner._step_callback

    def held_after_first_step(self: FluxRunner, *args: Any, **kwargs: Any) -> Any:
        callback = step_callback(self, *args, **kwargs)

        def held(pipe: Any, index: int, t: Any, state: dict[str, Any]) -> dict[str, Any]:
            state = callback(pipe, index, t, state)
            if index == 0:
                shown.wait(timeout=30)
            return state

        return held

    monkeypatch.setattr(FluxRunner, "_step_callback", held_after_first_step)
    bot = await harness.start()
    server = harness.server
    scheduler = bot.engine.scheduler
    scheduler.pause()  # the job waits in the queue, so its status shows a queue position first
    record = await server.slash(server.alice, "imagine", {"prompt": "a quick fox", "steps": 3})

    def status_edits() -> list[RecordedRequest]:
        return [
            r
            for r in server.requests
            if record.token in r.path
            and r.method == "PATCH"
            and r.path.endswith("/messages/@original")
            and r.done_at is not None
        ]

    # The command's own "queued" text, then the tracker's queue-position edit.
    await server.wait_until(lambda: len(status_edits()) >= 2, within_s=30, what="queued edits")
    scheduler.resume()
    await server.wait_until(
        lambda: any(
            "step 1/3" in str((e.payload or {}).get("content", "")) for e in status_edits()
        ),
        within_s=60,
        what="the first step's edit",
    )
    shown.set()
    await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    mine = [r for r in server.requests if record.token in r.path]
    result = next(r for r in mine if r.method == "POST" and r.files)
    edits = [r for r in mine if r.method == "PATCH" and r.path.endswith("/messages/@original")]
    steps = [e for e in edits if "step 1/3" in str((e.payload or {}).get("content", ""))]
    assert steps, [str((e.payload or {}).get("content")) for e in edits]
    first = steps[0]
    assert first.at < result.at
    assert [name for name, _ in first.files] == ["preview.png"]
