"""The one thread that calls a pipeline replica: submitted calls run in order on it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any, TypeVar

from fluxbot.devices.capture_gate import CaptureGate

T = TypeVar("T")


class DeviceThread:
    """A single daemon thread running submitted calls in order: the only caller of its runner.

    Daemon (unlike ThreadPoolExecutor's threads) so that a call hung inside a driver cannot
    keep the process from exiting.
    """

    def __init__(self, name: str, gate: CaptureGate | None = None) -> None:
        self._gate = gate  # each call works on the device inside it (no capture meanwhile)
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((fn, future))
        return future

    def shutdown(self) -> None:
        """Stop after the calls already submitted (at once if none is running)."""
        self._calls.put(None)

    def _loop(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with self._gate.working() if self._gate is not None else nullcontext():
                    result = fn()
                future.set_result(result)
            except BaseException as exc:
                future.set_exception(exc)
