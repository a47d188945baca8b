"""One "something changed" signal that tests can wait on with a predicate and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


POLL_S = 0.02


class ChangeFeed:
    """Wakes every waiter on each change; a waiter re-checks its predicate and sleeps again.

    Waiters also re-check every `POLL_S`, so a predicate may look at state the fake does not own
    (a list the bot under test appends to, the bot's own caches).
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(
        self,
        check: Callable[[], T | None],
        *,
        within_s: float,
        what: str,
        context: Callable[[], str] | None = None,
    ) -> T:
        """Return the first truthy `check()` result; TimeoutError names `what` and the context."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                detail = f"\n{context()}" if context is not None else ""
                raise TimeoutError(f"timed out after {within_s:.1f}s waiting for {what}{detail}")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, POLL_S))
