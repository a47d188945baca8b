"""Memory snapshots, pressure levels, cleanup between jobs, and out-of-memory recovery.

The worker calls these between and around jobs: `take_snapshot` after a job, `CleanupPolicy`
to decide whether a cleanup is worth its cost, `cleanup` (timed), `is_out_of_memory` and
`lighter_settings_for` to retry a job once, lighter, when the device runs out of memory.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING

import torch

from fluxbot.devices.backends import MemoryBackend, TorchBackend

if TYPE_CHECKING:
    from fluxbot.config import Settings

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class MemorySnapshot:
    """Device and system memory at one moment; None where the backend could not tell.

    For the CPU the device figures are system RAM. `allocated`/`reserved` are this process's
    torch allocator; `reserved - allocated` is cache torch holds but is not using.
    """

    device: str
    device_free: int | None = None
    device_total: int | None = None
    allocated: int | None = None
    reserved: int | None = None
    ram_available: int | None = None
    ram_total: int | None = None

    @property
    def device_used_fraction(self) -> float | None:
        return _used_fraction(self.device_free, self.device_total)

    @property
    def ram_used_fraction(self) -> float | None:
        return _used_fraction(self.ram_available, self.ram_total)

    @property
    def cached(self) -> int | None:
        """Bytes the allocator reserved but no tensor uses: what `empty_cache` can give back."""
        if self.allocated is None or self.reserved is None:
            return None
        return max(self.reserved - self.allocated, 0)


def _used_fraction(free: int | None, total: int | None) -> float | None:
    if free is None or not total:
        return None
    return min(max(1.0 - free / total, 0.0), 1.0)


def take_snapshot(torch_device: str, backend: MemoryBackend | None = None) -> MemorySnapshot:
    """Read memory figures for `torch_device` ('cpu', 'cuda:0', 'xpu:0', 'mps'); never raises.

    On CUDA this is one cudaMemGetInfo plus allocator counters and /proc/meminfo: cheap
    enough to run after every job.
    """
    backend = backend or TorchBackend()
    try:
        free_total = backend.mem_get_info(torch_device)
        stats = backend.allocator_stats(torch_device)
        ram = backend.ram()
    except Exception as exc:  # a snapshot is advice; it must never fail a job
        log.warning("memory snapshot of %s failed: %s", torch_device, exc)
        return MemorySnapshot(device=torch_device)
    return MemorySnapshot(
        device=torch_device,
        device_free=free_total[0] if free_total else None,
        device_total=free_total[1] if free_total else None,
        allocated=stats[0] if stats else None,
        reserved=stats[1] if stats else None,
        ram_available=ram[0] if ram else None,
        ram_total=ram[1] if ram else None,
    )


class Pressure(IntEnum):
    """How close memory is to full; ordered, so `max` gives the worst."""

    OK = 0
    HIGH = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class MemoryThresholds:
    """Used fractions at which pressure turns high and critical (FLUXBOT_MEMORY_HIGH, _CRITICAL)."""

    high: float = 0.85
    critical: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.high < self.critical <= 1:
            raise ValueError(
                f"memory thresholds must satisfy 0 < high < critical <= 1, "
                f"got high={self.high}, critical={self.critical}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryThresholds:
        return cls(high=settings.memory_high, critical=settings.memory_critical)

    def level(self, used_fraction: float | None) -> Pressure:
        if used_fraction is None:
            return Pressure.OK
        if used_fraction >= self.critical:
            return Pressure.CRITICAL
        if used_fraction >= self.high:
            return Pressure.HIGH
        return Pressure.OK

    def pressure(self, snapshot: MemorySnapshot) -> Pressure:
        """The worse of device and system RAM pressure (offload profiles live in RAM too)."""
        return max(
            self.level(snapshot.device_used_fraction), self.level(snapshot.ram_used_fraction)
        )


@dataclass(frozen=True)
class CleanupDecision:
    clean: bool
    reason: str


@dataclass(frozen=True)
class CleanupPolicy:
    """When a cleanup between jobs is worth it: not after every job, only when it helps.

    Emptying the cache after every job makes the next job pay for fresh device allocations,
    so the policy cleans when memory is tight, when idle cache is a large share of the device,
    and every `every_n_jobs` jobs as a safety net against slow leaks and fragmentation.
    """

    thresholds: MemoryThresholds = MemoryThresholds()
    cache_fraction: float = 0.25
    every_n_jobs: int = 50

    def decide(self, snapshot: MemorySnapshot, jobs_since_clean: int) -> CleanupDecision:
        level = self.thresholds.pressure(snapshot)
        if level >= Pressure.HIGH:
            return CleanupDecision(True, f"memory pressure {level} ({_describe(snapshot)})")
        cached = snapshot.cached
        if (
            cached
            and snapshot.device_total
            and cached >= self.cache_fraction * snapshot.device_total
        ):
            return CleanupDecision(True, f"{cached / GIB:.1f} GiB cached but unused")
        if jobs_since_clean >= self.every_n_jobs:
            return CleanupDecision(True, f"{jobs_since_clean} jobs since the last cleanup")
        return CleanupDecision(False, f"memory pressure ok ({_describe(snapshot)})")

    def should_clean(self, snapshot: MemorySnapshot, jobs_since_clean: int) -> bool:
        return self.decide(snapshot, jobs_since_clean).clean


def _describe(snapshot: MemorySnapshot) -> str:
    parts = []
    if snapshot.device_used_fraction is not None:
        parts.append(f"{snapshot.device} {snapshot.device_used_fraction:.0%} used")
    if snapshot.ram_used_fraction is not None:
        parts.append(f"RAM {snapshot.ram_used_fraction:.0%} used")
    return ", ".join(parts) or "no figures"


def cleanup(torch_device: str, backend: MemoryBackend | None = None) -> float:
    """Collect Python garbage and free the device's cached blocks; return the seconds it took.

    Call it outside any `except` block that caught an OOM: a live traceback keeps the failed
    job's tensors alive. Never raises.
    """
    backend = backend or TorchBackend()
    started = time.perf_counter()
    gc.collect()
    try:
        backend.empty_cache(torch_device)
    except Exception as exc:
        log.warning("emptying the cache of %s failed: %s", torch_device, exc)
    return time.perf_counter() - started


_OOM_MARKERS = (
    "out of memory",  # CUDA, HIP, XPU and MPS allocators, and "CUDA error: out of memory"
    "cublas_status_alloc_failed",
    "hipblas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "can't allocate memory",  # the CPU allocator
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an error (or one it was raised from) means a device or RAM ran out of memory."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError | MemoryError):
            return True
        if isinstance(current, RuntimeError):
            message = str(current).lower()
            if any(marker in message for marker in _OOM_MARKERS):
                return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class LighterSettings:
    """Memory-saving switches for a job: VAE tiling/slicing, and images one at a time."""

    vae_tiling: bool = False
    vae_slicing: bool = False
    split_batch: bool = False

    def describe(self) -> str:
        parts = []
        if self.vae_tiling:
            parts.append("VAE tiling")
        if self.vae_slicing:
            parts.append("VAE slicing")
        if self.split_batch:
            parts.append("one image at a time")
        return ", ".join(parts) or "no memory savers"


def lighter_settings_for(
    batch_size: int, current: LighterSettings | None = None
) -> LighterSettings:
    """The settings for the one retry after an OOM: what `current` had, plus every saver that
    applies (tiling always; slicing and splitting only for a batch of more than one image)."""
    current = current or LighterSettings()
    several = batch_size > 1
    return replace(
        current,
        vae_tiling=True,
        vae_slicing=current.vae_slicing or several,
        split_batch=current.split_batch or several,
    )
