"""Timing helpers: device sync, peak memory, stage probes and GPU idle-gap probes.

All GPU timings are either host clocks around a synchronised region or CUDA events on the
device's timeline; nothing here sleeps or guesses.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: str) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def cuda_median_ms(fn: Callable[[], Any], iters: int = 10, warm: int = 2) -> float:
    """Median milliseconds of `fn` on the current CUDA device (host clock around a synchronised
    call; without CUDA, around the call), after `warm` untimed calls."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - started))
    return sorted(times)[len(times) // 2]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class _Marker:
    """A point on the device timeline (CUDA event) or, on the CPU, on the host clock."""

    def __init__(self, device: str) -> None:
        self._cuda = torch.device(device).type == "cuda"
        if self._cuda:
            self._event = torch.cuda.Event(enable_timing=True)
            self._event.record()
        else:
            self._t = time.perf_counter()

    def seconds_until(self, later: _Marker) -> float:
        if self._cuda:
            return self._event.elapsed_time(later._event) / 1000.0
        return later._t - self._t


def _wrap_method(
    obj: Any, name: str, before: Callable[[], None], after: Callable[[], None]
) -> None:
    original = getattr(obj, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before()
        try:
            return original(*args, **kwargs)
        finally:
            after()

    setattr(obj, name, wrapped)


class StageProbe:
    """Splits a stock pipeline call into text encode / denoise / VAE decode on the device
    timeline: markers at the call, the first transformer forward, the start of `vae.decode`."""

    def __init__(self, pipe: Any, device: str) -> None:
        self.device = device
        self._marks: dict[str, _Marker] = {}
        pipe.transformer.register_forward_pre_hook(self._on_transformer)
        _wrap_method(pipe.vae, "decode", self._on_decode, lambda: None)

    def _on_transformer(self, *_: Any) -> None:
        self._marks.setdefault("denoise", _Marker(self.device))

    def _on_decode(self) -> None:
        self._marks.setdefault("decode", _Marker(self.device))

    def start(self) -> None:
        self._marks = {"start": _Marker(self.device)}

    def stop(self) -> dict[str, float]:
        end = _Marker(self.device)
        sync(self.device)
        m = self._marks
        return {
            "text_encode": m["start"].seconds_until(m["denoise"]),
            "denoise": m["denoise"].seconds_until(m["decode"]),
            "decode": m["decode"].seconds_until(end),
        }


@dataclass
class GapProbe:
    """GPU idle time between consecutive jobs, on the device timeline.

    A job's GPU work ends when its VAE decode ends; the next job's begins at its first text
    encoder or transformer forward. The gap between them is time the card sat idle: the end of
    the job on the device thread, the hop through the scheduler, and the next job's CPU set-up.
    """

    device: str
    gaps_s: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    missed: int = 0
    device_threads: set[str] = field(default_factory=set)
    _last_end: _Marker | None = None
    _job_started: bool = False
    _first_work: _Marker | None = None

    def attach(self, pipe: Any) -> None:
        # Outside any compiled region: a CUDA event recorded inside a compiled module's hook
        # is traced away. encode_prompt is the first GPU work on a cache miss, the
        # transformer (compiled per block, not as a whole) on a hit.
        _wrap_method(pipe, "encode_prompt", self._on_work, lambda: None)
        pipe.transformer.register_forward_pre_hook(self._on_work)
        _wrap_method(pipe.vae, "decode", lambda: None, self._on_decode_end)

    def _on_work(self, *_: Any) -> None:
        if self._job_started and self._first_work is None:
            self._first_work = _Marker(self.device)

    def _on_decode_end(self) -> None:
        self._decode_end = _Marker(self.device)

    def job_started(self) -> None:
        self.device_threads.add(threading.current_thread().name)
        self.starts.append(time.perf_counter())
        self._job_started = True
        self._first_work = None
        self._decode_end: _Marker | None = None

    def job_ended(self) -> None:
        sync(self.device)
        self.durations.append(time.perf_counter() - self.starts[-1])
        if self._last_end is not None and self._first_work is not None:
            try:
                self.gaps_s.append(self._last_end.seconds_until(self._first_work))
            except (ValueError, RuntimeError):  # an event that never reached the device
                self.missed += 1
        self._last_end = self._decode_end
        self._job_started = False

    def reset(self) -> None:
        self.gaps_s.clear()
        self._last_end = None


class ProbedRunner:
    """A FluxRunner seen through a GapProbe; the worker calls it exactly like the runner."""

    def __init__(self, runner: Any, probe: GapProbe) -> None:
        self.runner = runner
        self.probe = probe
        self.device = runner.device
        probe.attach(runner.pipe)

    def generate(self, requests: Any, **kwargs: Any) -> Any:
        self.probe.job_started()
        try:
            return self.runner.generate(requests, **kwargs)
        finally:
            self.probe.job_ended()
