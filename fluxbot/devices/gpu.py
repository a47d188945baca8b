"""Device discovery and status: NVIDIA CUDA, AMD ROCm, Intel XPU, Apple MPS, and the CPU.

The CPU is the fallback when no GPU is found or FLUXBOT_GPUS=cpu.

Everything that asks torch about devices goes through a `DeviceBackend` (the real one is
`TorchBackend`), so multi-device behaviour can be tested on a CPU-only machine with simulated
device lists. NVML state lives in an `NvmlMonitor` object, never at module level.
"""

from __future__ import annotations

import importlib
import logging
import platform
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import torch

from fluxbot.config import ConfigError

if TYPE_CHECKING:
    from fluxbot.config import Settings

log = logging.getLogger(__name__)

GIB = 1024**3

T = TypeVar("T")
Number = TypeVar("Number", int, float)


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


@dataclass(frozen=True)
class NvmlReading:
    """What NVML told about one card; a field NVML could not give is None."""

    memory_used: int | None = None
    memory_total: int | None = None
    utilization: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None


_NO_HANDLE = object()


class NvmlMonitor:
    """NVIDIA stats through NVML: initialised once by `start`, shut down once by `close`.

    Missing nvidia-ml-py, a missing driver library or a failing call all give None fields,
    never an exception. `nvml` is the pynvml module, or a stand-in in tests.
    """

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._state = "new"  # new -> running | unavailable -> closed
        self._handles: dict[str, Any] = {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def available(self) -> bool:
        return self._state == "running"

    def start(self) -> bool:
        """Initialise NVML (once); return whether NVML is usable."""
        with self._lock:
            if self._state != "new":
                return self._state == "running"
            try:
                nvml = self._nvml or importlib.import_module("pynvml")
                nvml.nvmlInit()
            except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver errors
                log.info("NVML not available (%s); GPU stats are what torch reports", exc)
                self._state = "unavailable"
                return False
            self._nvml = nvml
            self._state = "running"
            return True

    def close(self) -> None:
        """Shut NVML down if this monitor started it; later calls do nothing."""
        with self._lock:
            if self._state == "running":
                self._call("nvmlShutdown")
            self._state = "closed"
            self._handles.clear()

    def read(self, info: DeviceInfo) -> NvmlReading | None:
        """NVML's figures for an NVIDIA device, or None (not NVIDIA, NVML down, card not found)."""
        if info.vendor is not Vendor.NVIDIA:
            return None
        with self._lock:
            if self._state != "running":
                return None
            handle = self._handle(info)
            if handle is None:
                return None
            return self._read(handle)

    def _read(self, handle: Any) -> NvmlReading:
        nvml: Any = self._nvml
        memory = self._call("nvmlDeviceGetMemoryInfo", handle)
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        power = self._call("nvmlDeviceGetPowerUsage", handle)  # milliwatts
        limit = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        return NvmlReading(
            memory_used=_int(getattr(memory, "used", None)),
            memory_total=_int(getattr(memory, "total", None)),
            utilization=_int(getattr(rates, "gpu", None)),
            temperature_c=_int(
                self._call("nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
            ),
            power_w=None if power is None else power / 1000,
            power_limit_w=None if limit is None else limit / 1000,
            sm_clock_mhz=_int(self._call("nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM)),
            memory_clock_mhz=_int(
                self._call("nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM)
            ),
        )

    def _handle(self, info: DeviceInfo) -> Any | None:
        """The NVML handle of a card: by UUID, else PCI bus id, else index (cached, misses too)."""
        key = info.uuid or info.pci_bus_id or str(info.index)
        if key not in self._handles:
            handle = None
            if info.uuid:
                handle = self._call("nvmlDeviceGetHandleByUUID", info.uuid)
            if handle is None and info.pci_bus_id:
                handle = self._call("nvmlDeviceGetHandleByPciBusId", info.pci_bus_id)
            if handle is None and not (info.uuid or info.pci_bus_id) and info.index is not None:
                # Only when torch gave no identity: CUDA and NVML may number cards differently.
                handle = self._call("nvmlDeviceGetHandleByIndex", info.index)
            if handle is None:
                log.info("NVML has no card matching %s (%s)", info.torch_device, info.name)
            self._handles[key] = _NO_HANDLE if handle is None else handle
        handle = self._handles[key]
        return None if handle is _NO_HANDLE else handle

    def _call(self, name: str, *args: Any) -> Any | None:
        try:
            return getattr(self._nvml, name)(*args)
        except Exception as exc:  # NVMLError_NotSupported and friends: the field stays None
            log.debug("NVML %s failed: %s", name, exc)
            return None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


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


@dataclass(frozen=True)
class VendorSettings:
    """Process-wide torch switches a device wants; `notes` say what and why, for the log."""

    tf32_matmul: bool = False
    notes: tuple[str, ...] = ()


def vendor_settings_for(info: DeviceInfo) -> VendorSettings:
    """Decide the torch switches for a device (pure, so it can be tested without the card)."""
    if info.vendor is Vendor.NVIDIA:
        ampere = info.capability is not None and info.capability >= (8, 0)
        # cudnn.benchmark stays off: FLUX's only convolutions are the VAE's, where it gained
        # nothing on an H200 (bench probe: 85.2 vs 85.8 ms eager, 44.5 vs 44.3 compiled) and
        # it would search again for every new image size.
        notes = []
        if ampere:
            notes.append("TF32 matmul on: Ampere or newer runs fp32 matmuls on tensor cores")
        return VendorSettings(tf32_matmul=ampere, notes=tuple(notes))
    if info.vendor is Vendor.INTEL:
        return VendorSettings(notes=("XPU: bf16 runs natively; no switch needed",))
    if info.vendor is Vendor.APPLE:
        return VendorSettings(
            notes=("MPS: set PYTORCH_ENABLE_MPS_FALLBACK=1 before start for ops MPS lacks",)
        )
    return VendorSettings()


def apply_vendor_settings(info: DeviceInfo) -> VendorSettings:
    """Apply `vendor_settings_for(info)` to torch: the one place that flips vendor switches.

    Switches are only turned on, never off, since they are process-wide and another device of
    the same process may want them.
    """
    settings = vendor_settings_for(info)
    if settings.tf32_matmul:
        torch.set_float32_matmul_precision("high")
    for note in settings.notes:
        log.info("%s: %s", info.torch_device, note)
    return settings


def gpu_report(
    settings: Settings,
    devices: Sequence[DeviceInfo],
    backend: DeviceBackend | None = None,
    nvml: Any | None = None,
) -> list[GpuStatus]:
    """Every discovered device's status, marked with whether FLUXBOT_GPUS selects it and the
    memory profile FLUXBOT_MEMORY_PROFILE would give it (for `fluxbot gpus`)."""
    from fluxbot.engine.placement import (  # placement imports this module
        ProfileError,
        plan_placement,
    )

    backend = backend or TorchBackend()
    with NvmlMonitor(nvml) as monitor:
        statuses = [device_status(info, monitor, backend) for info in devices]
    try:
        selected = select_devices(settings.gpus, devices)
    except DeviceSelectionError as exc:
        log.error("%s", exc)
        return statuses
    free = {
        info.torch_device: _free_bytes(info, status)
        for info, status in zip(devices, statuses, strict=True)
    }
    ram = backend.ram()
    roles: dict[str, tuple[str, str]] = {}
    try:
        placement = plan_placement(
            settings.memory_profile,
            [(info, free[info.torch_device]) for info in selected],
            ram[0] if ram else 0,
        )
    except ProfileError as exc:
        roles = {info.torch_device: ("refused", str(exc)) for info in selected}
    else:
        for plan in placement.replicas:
            for device in dict.fromkeys(plan.devices.values()):
                role = str(plan.profile)
                if plan.is_split:
                    part = "transformer" if device == plan.primary else "text encoders"
                    role = f"{plan.profile} ({part})"
                roles[device] = (role, plan.reason)
        for unused in placement.unused:
            roles[unused.device] = ("unused", unused.reason)
    chosen = {info.torch_device for info in selected}
    return [
        replace(
            status,
            selected=status.device in chosen,
            profile=roles.get(status.device, (None, None))[0],
            profile_reason=roles.get(status.device, (None, None))[1],
        )
        for status in statuses
    ]


def _free_bytes(info: DeviceInfo, status: GpuStatus) -> int:
    if status.memory_used is None or status.memory_total is None:
        return info.total_memory  # unknown: assume an idle card
    return status.memory_total - status.memory_used


def format_device_table(statuses: Sequence[GpuStatus]) -> str:
    """A plain-text table of device statuses for `fluxbot gpus`; '-' where a field is unknown.

    '*' marks the devices FLUXBOT_GPUS selects; why each got its profile follows the table.
    """
    header = (
        "",
        "DEVICE",
        "NAME",
        "MEMORY USED/TOTAL",
        "UTIL",
        "TEMP",
        "POWER",
        "SM/MEM CLOCK",
        "PROFILE",
    )
    rows = [header, *(_row(s) for s in statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    reasons = dict.fromkeys(s.profile_reason for s in statuses if s.profile_reason)
    return "\n".join([*(line.rstrip() for line in lines), *(f"  {r}" for r in reasons)])


def _row(status: GpuStatus) -> tuple[str, ...]:
    return (
        "*" if status.selected else "",
        status.device,
        status.name,
        _pair(status.memory_used, status.memory_total, lambda b: f"{b / GIB:.1f}", " GiB"),
        "-" if status.utilization is None else f"{status.utilization}%",
        "-" if status.temperature_c is None else f"{status.temperature_c} C",
        _pair(status.power_w, status.power_limit_w, lambda w: f"{w:.0f}", " W"),
        _pair(status.sm_clock_mhz, status.memory_clock_mhz, str, " MHz"),
        status.profile or "-",
    )


def _pair(
    first: Number | None, second: Number | None, fmt: Callable[[Number], str], unit: str
) -> str:
    if first is None and second is None:
        return "-"
    left = "-" if first is None else fmt(first)
    right = "-" if second is None else fmt(second)
    return f"{left} / {right}{unit}"
