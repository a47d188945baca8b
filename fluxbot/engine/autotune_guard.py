"""Triton's autotuner, one thread at a time for a key's first call.

Triton's autotuner is not thread-safe: two threads tuning one key at once broke a compile on an
H200 (`TypeError: 'NoneType' object is not a mapping` in autotuner.run: a job's eager forward
and the background compile's warm-up both made a kernel's first call). fluxbot's kernels also
tune once at load on the loading thread; this guard covers any key that load did not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class FirstCallGuard:
    """Runs the first call for each key under a lock; later calls run as they come."""

    def __init__(self) -> None:
        self._tuned: set[Hashable] = set()
        self._lock = threading.Lock()

    def run(self, key: Hashable, call: Callable[[], None]) -> None:
        if key in self._tuned:
            call()
            return
        with self._lock:
            call()
            self._tuned.add(key)

    def tuned(self) -> frozenset[Hashable]:
        return frozenset(self._tuned)
