"""FluxBot's own life cycle: what it runs beside the gateway ends before its store closes."""

from __future__ import annotations

from tests.bot.conftest import BotHarness, wait_for


async def test_background_work_ends_before_the_store_closes(harness: BotHarness) -> None:
    # Regression: the redelivery started at on_ready was cancelled (cog unload) but not awaited
    # before the store was disposed; cut off inside a database call, such a task could wait on
    # a closed connection for ever and hang the event loop's teardown.
    bot = await harness.start()
    await wait_for(lambda: any(t.get_name() == "redeliver" for t in bot._background))
    seen: list[list[str]] = []
    close_store = bot.store.close

    async def close_and_note() -> None:
        seen.append([t.get_name() for t in bot._background if not t.done()])
        await close_store()

    bot.store.close = close_and_note  # type: ignore[method-assign]
    await harness.stop()
    assert seen == [[]], f"still running when the store closed: {seen}"
    assert all(t.done() for t in bot._background)
