"""The torch (and OS) queries fluxbot makes about devices, behind protocols faked in tests.

Everything that asks torch about devices goes through a `DeviceBackend` (the real one is
`TorchBackend`), so multi-device behaviour can be tested on a CPU-only machine with simulated
device lists. Every real query is guarded: a broken driver gives "unknown", never an exception.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RawDevice:
    """What torch reports about one accelerator, before fluxbot decides its vendor."""

    index: int
    name: str
    total_memory: int
    capability: tuple[int, int] | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None


class MemoryBackend(Protocol):
    """The memory questions fluxbot asks torch and the OS about a device; faked in tests."""

    def ram(self) -> tuple[int, int] | None:
        """(available, total) system RAM in bytes."""
        ...

    def mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
        """(free, total) bytes of the whole device, or None when unknown."""
        ...

    def allocator_stats(self, torch_device: str) -> tuple[int, int] | None:
        """(allocated, reserved) bytes held by this process's torch allocator, or None."""
        ...

    def empty_cache(self, torch_device: str) -> None: ...


class DeviceBackend(MemoryBackend, Protocol):
    """`MemoryBackend` plus discovery: which devices torch sees; faked in tests."""

    def hip_version(self) -> str | None: ...
    def cuda_devices(self) -> list[RawDevice]: ...
    def xpu_devices(self) -> list[RawDevice]: ...
    def mps_device(self) -> RawDevice | None: ...
    def cpu_name(self) -> str: ...


def _parse_device(torch_device: str) -> tuple[str, int]:
    """'cuda:1' -> ('cuda', 1); 'mps' -> ('mps', 0)."""
    device = torch.device(torch_device)
    return device.type, device.index or 0


def _guarded(what: str, call: Callable[[], T], default: T) -> T:
    """Run a torch query; a failure is logged and gives `default`, never an exception."""
    try:
        return call()
    except Exception as exc:  # a broken driver must not stop start-up or a status query
        log.debug("%s failed: %s", what, exc)
        return default


class TorchBackend:
    """The real `DeviceBackend`: asks torch (and psutil for RAM); every query is guarded."""

    def hip_version(self) -> str | None:
        return getattr(torch.version, "hip", None)

    def cuda_devices(self) -> list[RawDevice]:
        return _guarded("CUDA discovery", self._cuda_devices, [])

    def _cuda_devices(self) -> list[RawDevice]:
        if not torch.cuda.is_available():
            return []
        devices = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                RawDevice(
                    index=index,
                    name=props.name,
                    total_memory=int(props.total_memory),
                    capability=(int(props.major), int(props.minor)),
                    uuid=_nvml_uuid(getattr(props, "uuid", None)),
                    pci_bus_id=_pci_bus_id(props),
                )
            )
        return devices

    def xpu_devices(self) -> list[RawDevice]:
        return _guarded("XPU discovery", self._xpu_devices, [])

    def _xpu_devices(self) -> list[RawDevice]:
        xpu = getattr(torch, "xpu", None)
        if xpu is None or not xpu.is_available():
            return []
        devices = []
        for index in range(xpu.device_count()):
            props = xpu.get_device_properties(index)
            devices.append(
                RawDevice(index=index, name=props.name, total_memory=int(props.total_memory))
            )
        return devices

    def mps_device(self) -> RawDevice | None:
        return _guarded("MPS discovery", self._mps_device, None)

    def _mps_device(self) -> RawDevice | None:
        if not torch.backends.mps.is_available():
            return None
        # Unified memory: Metal's recommended working set is what the GPU may use.
        total = int(torch.mps.recommended_max_memory())
        return RawDevice(index=0, name=f"Apple {platform.machine()} GPU (MPS)", total_memory=total)

    def cpu_name(self) -> str:
        return _guarded("CPU name", _cpu_name, "CPU")

    def ram(self) -> tuple[int, int] | None:
        def read() -> tuple[int, int]:
            import psutil

            memory = psutil.virtual_memory()
            return int(memory.available), int(memory.total)

        return _guarded("system RAM", read, None)

    def mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
        return _guarded(f"memory of {torch_device}", lambda: self._mem_get_info(torch_device), None)

    def _mem_get_info(self, torch_device: str) -> tuple[int, int] | None:
        kind, index = _parse_device(torch_device)
        if kind == "cpu":
            return self.ram()
        if kind == "cuda" and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(index)
            return int(free), int(total)
        if kind == "xpu" and torch.xpu.is_available():
            free, total = torch.xpu.mem_get_info(index)
            return int(free), int(total)
        if kind == "mps" and torch.backends.mps.is_available():
            total = int(torch.mps.recommended_max_memory())
            used = int(torch.mps.driver_allocated_memory())
            return max(total - used, 0), total
        return None

    def allocator_stats(self, torch_device: str) -> tuple[int, int] | None:
        return _guarded(
            f"allocator of {torch_device}", lambda: self._allocator_stats(torch_device), None
        )

    def _allocator_stats(self, torch_device: str) -> tuple[int, int] | None:
        kind, index = _parse_device(torch_device)
        # These read the caching allocator's counters; they do not create a CUDA context.
        if kind == "cuda" and torch.cuda.is_available():
            return int(torch.cuda.memory_allocated(index)), int(torch.cuda.memory_reserved(index))
        if kind == "xpu" and torch.xpu.is_available():
            return int(torch.xpu.memory_allocated(index)), int(torch.xpu.memory_reserved(index))
        if kind == "mps" and torch.backends.mps.is_available():
            return int(torch.mps.current_allocated_memory()), int(
                torch.mps.driver_allocated_memory()
            )
        return None

    def empty_cache(self, torch_device: str) -> None:
        _guarded(f"empty cache of {torch_device}", lambda: self._empty_cache(torch_device), None)

    def _empty_cache(self, torch_device: str) -> None:
        kind, _ = _parse_device(torch_device)
        if kind == "cuda" and torch.cuda.is_initialized():
            # Frees unused cached blocks of every CUDA device of this process, not only this one;
            # blocks in use by another worker's running job are untouched.
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()  # blocks another process released (shared tensors)
        elif kind == "xpu" and torch.xpu.is_available():
            torch.xpu.empty_cache()
        elif kind == "mps" and torch.backends.mps.is_available():
            torch.mps.empty_cache()


def _nvml_uuid(uuid: object) -> str | None:
    """torch prints a CUDA uuid bare; NVML wants it as 'GPU-<uuid>'."""
    if uuid is None:
        return None
    text = str(uuid)
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _pci_bus_id(props: Any) -> str | None:
    """NVML's bus id form, '00000000:65:00.0', from torch's pci_* properties (torch >= 2.1)."""
    try:
        domain, bus, device = props.pci_domain_id, props.pci_bus_id, props.pci_device_id
    except AttributeError:
        return None
    return f"{int(domain):08X}:{int(bus):02X}:{int(device):02X}.0"


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "CPU"
