"""Memory snapshots, pressure, the cleanup policy, cleanup itself and OOM classification."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch

from fluxbot.config import load_settings
from fluxbot.devices.memory import (
    CleanupPolicy,
    LighterSettings,
    MemorySnapshot,
    MemoryThresholds,
    Pressure,
    cleanup,
    is_out_of_memory,
    lighter_settings_for,
    take_snapshot,
)

GIB = 1024**3


@dataclass
class FakeBackend:
    """A `MemoryBackend` as data; records cache emptying."""

    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    ram_figures: tuple[int, int] = (48 * GIB, 64 * GIB)
    emptied: list[str] = field(default_factory=list)

    def ram(self) -> tuple[int, int] | None:
        return self.ram_figures

    def mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
        return self.memory.get(torch_device)

    def allocator_stats(self, torch_device: str) -> tuple[int, int] | None:
        return self.stats.get(torch_device)

    def empty_cache(self, torch_device: str) -> None:
        self.emptied.append(torch_device)


def snapshot(
    used: float = 0.5,
    ram_used: float = 0.5,
    allocated: int = 0,
    reserved: int = 0,
    total: int = 80 * GIB,
) -> MemorySnapshot:
    return MemorySnapshot(
        device="cuda:0",
        device_free=int(total * (1 - used)),
        device_total=total,
        allocated=allocated,
        reserved=reserved,
        ram_available=int(64 * GIB * (1 - ram_used)),
        ram_total=64 * GIB,
    )


class TestSnapshot:
    def test_cpu_snapshot_reads_this_machines_ram(self) -> None:
        snap = take_snapshot("cpu")

        assert snap.ram_total and snap.ram_total > 0
        assert snap.device_total == snap.ram_total
        assert snap.device_used_fraction is not None and 0 <= snap.device_used_fraction <= 1

    def test_a_gpu_this_machine_lacks_gives_empty_device_figures(self) -> None:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")

        snap = take_snapshot("cuda:3")

        assert snap.device_free is None and snap.device_total is None
        assert snap.ram_total  # system RAM is still known

    def test_simulated_gpu_figures(self) -> None:
        backend = FakeBackend(
            memory={"cuda:1": (20 * GIB, 80 * GIB)}, stats={"cuda:1": (50 * GIB, 56 * GIB)}
        )

        snap = take_snapshot("cuda:1", backend)

        assert snap.device_used_fraction == pytest.approx(0.75)
        assert snap.cached == 6 * GIB

    def test_a_backend_that_raises_gives_an_empty_snapshot(self) -> None:
        class Broken(FakeBackend):
            def mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
                raise RuntimeError("CUDA driver error")

        snap = take_snapshot("cuda:0", Broken())

        assert snap == MemorySnapshot(device="cuda:0")


class TestPressure:
    thresholds = MemoryThresholds(high=0.85, critical=0.95)

    @pytest.mark.parametrize(
        ("used", "level"),
        [
            (0.5, Pressure.OK),
            (0.849, Pressure.OK),
            (0.85, Pressure.HIGH),
            (0.96, Pressure.CRITICAL),
        ],
    )
    def test_device_levels(self, used: float, level: Pressure) -> None:
        assert self.thresholds.pressure(snapshot(used=used, ram_used=0.1)) is level

    def test_ram_counts_too(self) -> None:
        assert self.thresholds.pressure(snapshot(used=0.1, ram_used=0.97)) is Pressure.CRITICAL

    def test_unknown_figures_are_ok(self) -> None:
        assert self.thresholds.pressure(MemorySnapshot(device="cuda:0")) is Pressure.OK

    def test_thresholds_come_from_settings(self) -> None:
        settings = load_settings(memory_high=0.7, memory_critical=0.8)

        thresholds = MemoryThresholds.from_settings(settings)

        assert thresholds.pressure(snapshot(used=0.75, ram_used=0.1)) is Pressure.HIGH

    def test_thresholds_out_of_order_are_refused(self) -> None:
        with pytest.raises(ValueError, match="high < critical"):
            MemoryThresholds(high=0.9, critical=0.8)


class TestCleanupPolicy:
    policy = CleanupPolicy(MemoryThresholds(0.85, 0.95), cache_fraction=0.25, every_n_jobs=50)

    def test_no_cleanup_when_memory_is_fine(self) -> None:
        decision = self.policy.decide(snapshot(used=0.5, reserved=4 * GIB), jobs_since_clean=3)

        assert not decision.clean
        assert not self.policy.should_clean(snapshot(used=0.5), jobs_since_clean=3)

    def test_high_pressure_cleans(self) -> None:
        decision = self.policy.decide(snapshot(used=0.9), jobs_since_clean=1)

        assert decision.clean and "high" in decision.reason

    def test_a_large_idle_cache_cleans(self) -> None:
        idle = snapshot(used=0.6, allocated=20 * GIB, reserved=45 * GIB)

        decision = self.policy.decide(idle, jobs_since_clean=1)

        assert decision.clean and "25.0 GiB cached" in decision.reason

    def test_a_small_idle_cache_is_kept_for_the_next_job(self) -> None:
        assert not self.policy.should_clean(
            snapshot(used=0.6, allocated=20 * GIB, reserved=30 * GIB), jobs_since_clean=1
        )

    def test_every_n_jobs_is_a_safety_net(self) -> None:
        assert not self.policy.should_clean(snapshot(), jobs_since_clean=49)
        assert self.policy.should_clean(snapshot(), jobs_since_clean=50)


class TestCleanup:
    @pytest.fixture
    def no_automatic_gc(self) -> Iterator[None]:
        gc.disable()
        yield
        gc.enable()

    @pytest.mark.usefixtures("no_automatic_gc")
    def test_collects_cyclic_garbage_and_empties_the_device_cache(self) -> None:
        class Node:
            pass

        node = Node()
        node.me = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
        del node
        backend = FakeBackend()

        seconds = cleanup("cuda:1", backend)

        assert alive() is None
        assert backend.emptied == ["cuda:1"]
        assert seconds >= 0  # the time it took is reported, never asserted

    def test_a_failing_empty_cache_is_not_an_error(self) -> None:
        class Broken(FakeBackend):
            def empty_cache(self, torch_device: str) -> None:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

        assert cleanup("cuda:0", Broken()) >= 0

    def test_the_real_backend_on_the_cpu(self) -> None:
        assert cleanup("cpu") >= 0


class TestOutOfMemory:
    @pytest.mark.parametrize(
        "error",
        [
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            RuntimeError("HIP out of memory. Tried to allocate 1.00 GiB"),
            RuntimeError("XPU out of memory. Tried to allocate 512.00 MiB"),
            RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"),
            RuntimeError("CUDA error: out of memory"),
            RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"),
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory"
            ),
            MemoryError(),
        ],
    )
    def test_recognised(self, error: BaseException) -> None:
        assert is_out_of_memory(error)

    @pytest.mark.parametrize(
        "error",
        [
            RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"),
            ValueError("height must be a multiple of 16, not out of memory"),
            KeyError("out of memory"),
        ],
    )
    def test_other_errors_are_not(self, error: BaseException) -> None:
        assert not is_out_of_memory(error)

    def test_an_oom_wrapped_by_another_error_is_found(self) -> None:
        try:
            try:
                raise torch.OutOfMemoryError("CUDA out of memory")
            except torch.OutOfMemoryError as inner:
                raise RuntimeError("pipeline step 3 failed") from inner
        except RuntimeError as outer:
            assert is_out_of_memory(outer)


class TestLighterSettings:
    def test_one_image_gets_vae_tiling_only(self) -> None:
        lighter = lighter_settings_for(1)

        assert lighter == LighterSettings(vae_tiling=True)
        assert lighter.describe() == "VAE tiling"

    def test_a_batch_is_split_and_sliced(self) -> None:
        lighter = lighter_settings_for(4)

        assert lighter == LighterSettings(vae_tiling=True, vae_slicing=True, split_batch=True)
        assert lighter.describe() == "VAE tiling, VAE slicing, one image at a time"

    def test_savers_already_on_stay_on(self) -> None:
        lighter = lighter_settings_for(1, LighterSettings(vae_slicing=True))

        assert lighter.vae_slicing and lighter.vae_tiling
