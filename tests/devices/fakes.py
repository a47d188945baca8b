"""Simulated machines for the device tests: a torch backend and an NVML described as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from fluxbot.devices.backends import RawDevice
from fluxbot.devices.discovery import DeviceInfo, discover_devices

GIB = 1024**3


@dataclass
class FakeBackend:
    """A machine described as data: what torch and psutil would report."""

    cuda: list[RawDevice] = field(default_factory=list)
    hip: str | None = None
    xpu: list[RawDevice] = field(default_factory=list)
    mps: RawDevice | None = None
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)
    ram_figures: tuple[int, int] = (48 * GIB, 64 * GIB)
    emptied: list[str] = field(default_factory=list)

    def hip_version(self) -> str | None:
        return self.hip

    def cuda_devices(self) -> list[RawDevice]:
        return self.cuda

    def xpu_devices(self) -> list[RawDevice]:
        return self.xpu

    def mps_device(self) -> RawDevice | None:
        return self.mps

    def cpu_name(self) -> str:
        return "Test CPU"

    def ram(self) -> tuple[int, int] | None:
        return self.ram_figures

    def mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
        if torch_device == "cpu":
            return self.ram_figures
        return self.memory.get(torch_device)

    def allocator_stats(self, torch_device: str) -> tuple[int, int] | None:
        return self.stats.get(torch_device)

    def empty_cache(self, torch_device: str) -> None:
        self.emptied.append(torch_device)


def raw(index: int, name: str, gib: int, cap: tuple[int, int] | None = None) -> RawDevice:
    return RawDevice(
        index=index,
        name=name,
        total_memory=gib * GIB,
        capability=cap,
        uuid=f"GPU-{index:04d}",
        pci_bus_id=f"00000000:{index + 1:02X}:00.0",
    )


def two_nvidia() -> FakeBackend:
    return FakeBackend(
        cuda=[raw(0, "NVIDIA H100 80GB HBM3", 80, (9, 0)), raw(1, "NVIDIA RTX 3060", 12, (8, 6))]
    )


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's surface as fluxbot uses it, recording init/shutdown and failing on request."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, uuids: tuple[str, ...] = ("GPU-0000",), fail: tuple[str, ...] = ()) -> None:
        self.uuids = uuids
        self.fail = set(fail)
        self.inits = 0
        self.shutdowns = 0
        self.lookups = 0

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise NVMLError(f"{name}: Not Supported")

    def nvmlInit(self) -> None:
        self._maybe_fail("nvmlInit")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.lookups += 1
        if uuid not in self.uuids:
            raise NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        raise NVMLError("Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return self.uuids[index]

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        self._maybe_fail("memory")
        return SimpleNamespace(used=10 * GIB, total=80 * GIB, free=70 * GIB)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        self._maybe_fail("temperature")
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 350_500

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: str) -> int:
        return 700_000

    def nvmlDeviceGetClockInfo(self, handle: str, clock: int) -> int:
        return {self.NVML_CLOCK_SM: 1980, self.NVML_CLOCK_MEM: 2619}[clock]


def h100() -> DeviceInfo:
    return discover_devices(two_nvidia())[0]
