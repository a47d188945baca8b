"""Keeps a device's CUDA graph captures apart from the other threads' work on that device.

While a stream captures a CUDA graph, the device refuses whatever would synchronise with it:
`torch.cuda.synchronize`, freeing cached memory, Triton's autotuning. On an H200 a `fast`
upscale job failed that way ("operation not permitted when stream is capturing") while the
background compile thread captured the denoising step of a shape it had just compiled, and the
capture failed with it. So every thread that works on a device does it inside
`gate.working()` (the device thread around each call, the compile thread around each shape),
and a capture happens inside `gate.capturing()`, which waits until no other thread is working
and keeps new work out meanwhile (a capture records, it does not run: well under a second).

A thread may capture inside its own working span; a thread waiting to capture counts as idle
(it issues nothing), so two threads that both want to capture do not wait on each other.
`try_capturing()` does not wait: a caller that can as well capture later (the text encoders'
graphs, on a device thread that must not wait on a compile) runs eagerly this time instead.
`capturing(timeout_s)` gives up after a while: a device thread abandoned in a hung call keeps
its span open for ever, and the fresh replica's captures must not wait on it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import torch


class CaptureGate:
    """A readers-writer gate: many working threads, or one capturing thread (writers first)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._working: Counter[int] = Counter()  # thread id -> nesting depth
        self._waiting: set[int] = set()  # threads waiting to capture
        self._capturing: int | None = None

    def _others_busy(self, me: int) -> bool:
        return any(t != me and t not in self._waiting for t in self._working)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Work on the device; waits while another thread captures or waits to."""
        me = threading.get_ident()
        with self._cond:
            if not self._working[me]:  # nested spans never wait (the capturer's own included)
                while (self._capturing not in (None, me)) or (self._waiting - {me}):
                    self._cond.wait()
            self._working[me] += 1
        try:
            yield
        finally:
            with self._cond:
                self._working[me] -= 1
                if not self._working[me]:
                    del self._working[me]
                self._cond.notify_all()

    @contextlib.contextmanager
    def capturing(self, timeout_s: float | None = None) -> Iterator[bool]:
        """Capture with no other thread working on the device: waits for them to stop, at most
        `timeout_s` (then it yields False and holds nothing: a thread may hang in a driver
        call, abandoned by its worker, and must not stop the card's other work for ever)."""
        me = threading.get_ident()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._waiting.add(me)
            try:
                while self._capturing is not None or self._others_busy(me):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._capturing = me
            finally:
                self._waiting.discard(me)
                self._cond.notify_all()  # work held back for this capture may go on
        free = self._capturing == me
        try:
            yield free
        finally:
            if free:
                self._release()

    @contextlib.contextmanager
    def try_capturing(self) -> Iterator[bool]:
        """Like `capturing`, but yields False at once (and holds nothing) if it would wait."""
        me = threading.get_ident()
        with self._cond:
            free = self._capturing is None and not self._others_busy(me) and not self._waiting
            if free:
                self._capturing = me
        try:
            yield free
        finally:
            if free:
                self._release()

    def _release(self) -> None:
        with self._cond:
            self._capturing = None
            self._cond.notify_all()


_GATES: dict[tuple[str, int | None], CaptureGate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(device: torch.device | str) -> CaptureGate:
    """The one gate of a device (a CUDA device without an index is the current one; a name
    torch does not know, e.g. a test's stand-in device, has a gate of its own)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        key: tuple[str, int | None] = (str(device), None)
    else:
        index = dev.index
        if dev.type == "cuda" and index is None and torch.cuda.is_available():
            index = torch.cuda.current_device()
        key = (dev.type, index)
    with _GATES_LOCK:
        return _GATES.setdefault(key, CaptureGate())
