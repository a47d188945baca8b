"""NVIDIA figures through NVML; its state lives in an `NvmlMonitor`, never at module level."""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from fluxbot.devices.discovery import DeviceInfo, Vendor

log = logging.getLogger(__name__)


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
