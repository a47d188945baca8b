"""One device's state now (memory, load, temperature, power, clocks): NVML and torch combined."""

from __future__ import annotations

from dataclasses import dataclass

from fluxbot.devices.backends import MemoryBackend, TorchBackend
from fluxbot.devices.discovery import DeviceInfo, Vendor
from fluxbot.devices.nvml import NvmlMonitor, NvmlReading


@dataclass(frozen=True)
class GpuStatus:
    """A device's state for `/gpu` and `fluxbot gpus`; None where the vendor cannot tell.

    `memory_used`/`memory_total` are the whole device (all processes); `allocated`/`reserved`
    are this process's torch allocator.
    """

    device: str
    name: str
    vendor: Vendor
    memory_used: int | None = None
    memory_total: int | None = None
    allocated: int | None = None
    reserved: int | None = None
    utilization: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    selected: bool = False
    profile: str | None = None
    profile_reason: str | None = None


def device_status(
    info: DeviceInfo,
    monitor: NvmlMonitor | None = None,
    backend: MemoryBackend | None = None,
) -> GpuStatus:
    """Combine NVML (NVIDIA) and torch's figures for one device; never raises.

    Device memory comes from NVML when it answers (no CUDA context is created just to look),
    else from torch's mem_get_info; for the CPU it is system RAM.
    """
    backend = backend or TorchBackend()
    reading = (monitor.read(info) if monitor else None) or NvmlReading()
    used, total = reading.memory_used, reading.memory_total
    if used is None or total is None:
        free_total = backend.mem_get_info(info.torch_device)
        if free_total is not None:
            free, total = free_total
            used = total - free
    stats = backend.allocator_stats(info.torch_device)
    return GpuStatus(
        device=info.torch_device,
        name=info.name,
        vendor=info.vendor,
        memory_used=used,
        memory_total=total,
        allocated=stats[0] if stats else None,
        reserved=stats[1] if stats else None,
        utilization=reading.utilization,
        temperature_c=reading.temperature_c,
        power_w=reading.power_w,
        power_limit_w=reading.power_limit_w,
        sm_clock_mhz=reading.sm_clock_mhz,
        memory_clock_mhz=reading.memory_clock_mhz,
    )
