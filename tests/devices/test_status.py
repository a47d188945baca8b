"""device_status: NVML and torch figures combined, never raising."""

from __future__ import annotations

import torch

from fluxbot.devices.backends import TorchBackend
from fluxbot.devices.discovery import DeviceInfo, Vendor, discover_devices
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.devices.status import device_status
from tests.devices.fakes import GIB, FakeBackend, FakeNvml, h100, two_nvidia


class TestDeviceStatus:
    def test_nvidia_with_nvml_has_every_field(self) -> None:
        backend = two_nvidia()
        backend.stats["cuda:0"] = (5 * GIB, 7 * GIB)
        with NvmlMonitor(FakeNvml()) as monitor:
            status = device_status(h100(), monitor, backend)

        assert status.memory_used == 10 * GIB and status.memory_total == 80 * GIB
        assert (status.allocated, status.reserved) == (5 * GIB, 7 * GIB)
        assert status.utilization == 97 and status.power_limit_w == 700.0

    def test_without_nvml_memory_comes_from_torch(self) -> None:
        backend = two_nvidia()
        backend.memory["cuda:0"] = (60 * GIB, 80 * GIB)

        status = device_status(h100(), None, backend)

        assert (status.memory_used, status.memory_total) == (20 * GIB, 80 * GIB)
        assert status.utilization is None and status.temperature_c is None

    def test_unknown_memory_stays_none(self) -> None:
        status = device_status(h100(), None, two_nvidia())

        assert status.memory_used is None and status.memory_total is None

    def test_the_cpu_shows_system_ram(self) -> None:
        backend = FakeBackend(ram_figures=(16 * GIB, 64 * GIB))
        cpu = discover_devices(backend)[-1]

        status = device_status(cpu, None, backend)

        assert (status.memory_used, status.memory_total) == (48 * GIB, 64 * GIB)

    def test_the_real_backend_never_raises_for_a_missing_device(self) -> None:
        ghost = DeviceInfo(1, "cuda:1", "ghost", Vendor.NVIDIA, 0, (9, 0))
        with NvmlMonitor() as monitor:
            status = device_status(ghost, monitor, TorchBackend())

        if not torch.cuda.is_available():
            assert status.memory_used is None
