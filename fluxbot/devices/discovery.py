"""Device discovery and selection: NVIDIA CUDA, AMD ROCm, Intel XPU, Apple MPS, and the CPU.

The CPU is the fallback when no GPU is found or FLUXBOT_GPUS=cpu.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from fluxbot.config import ConfigError
from fluxbot.devices.backends import DeviceBackend, RawDevice, TorchBackend

log = logging.getLogger(__name__)


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    APPLE = "apple"
    CPU = "cpu"


class DeviceSelectionError(ConfigError):
    """FLUXBOT_GPUS names a device this machine does not have; the message lists what exists."""


@dataclass(frozen=True)
class DeviceInfo:
    """One device fluxbot can run on, as discovered at start.

    `index` is the number FLUXBOT_GPUS uses (None for the CPU). `uuid` and `pci_bus_id` let NVML
    find the same card even when CUDA and NVML number the cards differently.
    """

    index: int | None
    torch_device: str
    name: str
    vendor: Vendor
    total_memory: int
    capability: tuple[int, int] | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None

    @property
    def is_gpu(self) -> bool:
        return self.vendor is not Vendor.CPU

    def label(self) -> str:
        """`0: NVIDIA H100 80GB HBM3` - how error messages and logs name a device."""
        prefix = "cpu" if self.index is None else str(self.index)
        return f"{prefix}: {self.name}"


def discover_devices(backend: DeviceBackend | None = None) -> list[DeviceInfo]:
    """Every device torch can use, GPUs first (by index), then the CPU, which is always there.

    A torch build drives one accelerator family, so the first family found is used:
    CUDA (NVIDIA, or AMD when torch is a ROCm build), then Intel XPU, then Apple MPS.
    """
    backend = backend or TorchBackend()
    ram = backend.ram()
    cpu = DeviceInfo(
        index=None,
        torch_device="cpu",
        name=backend.cpu_name(),
        vendor=Vendor.CPU,
        total_memory=ram[1] if ram else 0,
    )
    return [*_accelerators(backend), cpu]


def _accelerators(backend: DeviceBackend) -> list[DeviceInfo]:
    cuda = backend.cuda_devices()
    if cuda:
        vendor = Vendor.AMD if backend.hip_version() else Vendor.NVIDIA
        return [_device(raw, f"cuda:{raw.index}", vendor) for raw in cuda]
    xpu = backend.xpu_devices()
    if xpu:
        return [_device(raw, f"xpu:{raw.index}", Vendor.INTEL) for raw in xpu]
    mps = backend.mps_device()
    if mps is not None:
        return [_device(mps, "mps", Vendor.APPLE)]
    return []


def _device(raw: RawDevice, torch_device: str, vendor: Vendor) -> DeviceInfo:
    return DeviceInfo(
        index=raw.index,
        torch_device=torch_device,
        name=raw.name,
        vendor=vendor,
        total_memory=raw.total_memory,
        capability=raw.capability,
        uuid=raw.uuid if vendor is Vendor.NVIDIA else None,
        pci_bus_id=raw.pci_bus_id if vendor is Vendor.NVIDIA else None,
    )


def select_devices(spec: str, devices: Sequence[DeviceInfo]) -> list[DeviceInfo]:
    """Apply FLUXBOT_GPUS ('all', 'cpu' or indexes like '0,2') to the discovered devices.

    'all' falls back to the CPU when there is no GPU; a wrong index raises
    `DeviceSelectionError` naming the GPUs that exist.
    """
    spec = spec.strip().lower()
    gpus = [d for d in devices if d.is_gpu]
    cpus = [d for d in devices if not d.is_gpu]
    if spec == "cpu" or (spec == "all" and not gpus):
        if not cpus:
            raise DeviceSelectionError(f"FLUXBOT_GPUS={spec}: no CPU device was discovered")
        if spec == "all":
            log.warning("no GPU found; running on the CPU (%s), which is slow", cpus[0].name)
        return cpus[:1]
    if spec == "all":
        return gpus
    wanted = _parse_indexes(spec)
    by_index = {d.index: d for d in gpus}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        names = ", ".join(str(i) for i in missing)
        raise DeviceSelectionError(f"FLUXBOT_GPUS={spec}: no such GPU {names}; {_inventory(gpus)}")
    return [by_index[i] for i in wanted]


def _parse_indexes(spec: str) -> list[int]:
    parts = [p.strip() for p in spec.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise DeviceSelectionError(
            f"FLUXBOT_GPUS={spec}: use 'all', 'cpu' or GPU indexes such as '0,2'"
        )
    return list(dict.fromkeys(int(p) for p in parts))  # drop repeats, keep order


def _inventory(gpus: Sequence[DeviceInfo]) -> str:
    if not gpus:
        return (
            "this machine has no GPU that torch can use (CUDA, ROCm, XPU or MPS); "
            "set FLUXBOT_GPUS=cpu to run on the CPU"
        )
    return "this machine has " + ", ".join(d.label() for d in gpus)
