"""The events a job emits while it waits and runs, and a subscriber's stream of them.

Shared by the scheduler, the workers and their consumers (the bot, the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluxbot.serving.job import JobOutcome

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """The job is waiting: its 1-based place in the dispatch order and its estimated finish.

    `eta_at` is epoch seconds (handy for a Discord `<t:...:R>` timestamp that counts down alone).
    """

    job_id: str
    position: int
    eta_s: float
    eta_at: float


@dataclass(frozen=True, slots=True)
class StartedEvent:
    """The job left the queue for a device (alone or batched with `batch_size - 1` others)."""

    job_id: str
    device: str
    batch_size: int


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Step `step` of `total` is done; `preview` is a small image when the job asked for one."""

    job_id: str
    step: int
    total: int
    preview: Image.Image | None = None


@dataclass(frozen=True, slots=True)
class FinishedEvent:
    """The last event of every job, whatever its status."""

    job_id: str
    outcome: JobOutcome


JobEvent = PositionEvent | StartedEvent | ProgressEvent | FinishedEvent
EventSink = Callable[[JobEvent], None]
"""Receives events on the event loop thread (workers bridge from their threads themselves)."""

_LATEST_VALUE = (PositionEvent, ProgressEvent)


class JobEventStream:
    """One subscriber's view of one job's events, in order, ending with its `FinishedEvent`.

    Position and progress events have latest-value semantics when `coalesce` is on: a newer one
    replaces an unread older one, and any later event of another kind makes unread ones stale.
    `min_interval_s` spaces out position/progress events (a Discord message edit per second is
    plenty) without ever delaying the start or the finish. Each kind has its own spacing, so
    the first progress event (with its preview) is never held back by the queue-position
    update just before it: a job done in half a second still shows its first step. Use with
    `async for`.
    """

    def __init__(self, *, coalesce: bool = True, min_interval_s: float = 0.0) -> None:
        self._pending: deque[JobEvent] = deque()
        self._wake = asyncio.Event()
        self._finished = False
        self._coalesce = coalesce
        self._min_interval_s = min_interval_s
        self._last_update: dict[type, float] = {}  # per event kind

    @property
    def finished(self) -> bool:
        """True once the finish event was pushed (it may still be unread)."""
        return self._finished

    def push(self, event: JobEvent) -> None:
        """Add an event; call on the event loop thread. Events after the finish are ignored."""
        if self._finished:
            return
        if self._coalesce:
            if isinstance(event, _LATEST_VALUE):
                if self._pending and type(self._pending[-1]) is type(event):
                    self._pending[-1] = event
                    self._wake.set()
                    return
            else:
                self._pending = deque(e for e in self._pending if not isinstance(e, _LATEST_VALUE))
        self._pending.append(event)
        if isinstance(event, FinishedEvent):
            self._finished = True
        self._wake.set()

    def __aiter__(self) -> JobEventStream:
        return self

    async def __anext__(self) -> JobEvent:
        while True:
            if self._pending:
                head = self._pending[0]
                if isinstance(head, _LATEST_VALUE) and self._min_interval_s > 0:
                    last = self._last_update.get(type(head), -float("inf"))
                    wait = last + self._min_interval_s - time.monotonic()
                    if wait > 0:
                        await self._sleep_or_wake(wait)
                        continue
                    self._last_update[type(head)] = time.monotonic()
                return self._pending.popleft()
            if self._finished:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Wait out the throttle, but return early when a new event arrives."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
