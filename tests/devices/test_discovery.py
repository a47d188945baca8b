"""Device discovery and FLUXBOT_GPUS selection, on simulated machines."""

from __future__ import annotations

import pytest

from fluxbot.config import ConfigError
from fluxbot.devices.backends import RawDevice
from fluxbot.devices.discovery import DeviceSelectionError, Vendor, discover_devices, select_devices
from tests.devices.fakes import GIB, FakeBackend, raw, two_nvidia


class TestDiscovery:
    def test_nvidia_cards_come_first_and_the_cpu_last(self) -> None:
        devices = discover_devices(two_nvidia())

        assert [d.torch_device for d in devices] == ["cuda:0", "cuda:1", "cpu"]
        assert [d.vendor for d in devices] == [Vendor.NVIDIA, Vendor.NVIDIA, Vendor.CPU]
        assert devices[0].capability == (9, 0)
        assert devices[0].uuid == "GPU-0000"
        assert devices[2].index is None and devices[2].total_memory == 64 * GIB

    def test_a_rocm_build_reports_amd_cards_on_cuda_devices(self) -> None:
        backend = FakeBackend(cuda=[raw(0, "AMD Instinct MI300X", 192, (9, 4))], hip="6.2")

        device = discover_devices(backend)[0]

        assert device.vendor is Vendor.AMD
        assert device.torch_device == "cuda:0"
        assert device.uuid is None  # NVML must never be asked about an AMD card

    def test_intel_xpu(self) -> None:
        backend = FakeBackend(xpu=[raw(0, "Intel Arc A770", 16)])

        device = discover_devices(backend)[0]

        assert (device.vendor, device.torch_device) == (Vendor.INTEL, "xpu:0")

    def test_apple_mps_is_gpu_zero(self) -> None:
        backend = FakeBackend(mps=RawDevice(index=0, name="Apple GPU", total_memory=48 * GIB))

        device = discover_devices(backend)[0]

        assert (device.vendor, device.torch_device, device.index) == (Vendor.APPLE, "mps", 0)

    def test_no_accelerator_leaves_only_the_cpu(self) -> None:
        assert [d.torch_device for d in discover_devices(FakeBackend())] == ["cpu"]

    def test_the_real_backend_finds_this_machines_cpu(self) -> None:
        devices = discover_devices()

        assert devices[-1].torch_device == "cpu"
        assert devices[-1].total_memory > 0


class TestSelection:
    def test_all_takes_every_gpu(self) -> None:
        devices = discover_devices(two_nvidia())

        assert [d.torch_device for d in select_devices("all", devices)] == ["cuda:0", "cuda:1"]

    def test_all_without_a_gpu_falls_back_to_the_cpu(self) -> None:
        devices = discover_devices(FakeBackend())

        assert [d.torch_device for d in select_devices("all", devices)] == ["cpu"]

    def test_cpu_takes_the_cpu_even_with_gpus(self) -> None:
        devices = discover_devices(two_nvidia())

        assert [d.torch_device for d in select_devices("cpu", devices)] == ["cpu"]

    def test_indexes_pick_a_subset_in_the_order_given(self) -> None:
        backend = FakeBackend(cuda=[raw(i, f"GPU {i}", 24, (8, 9)) for i in range(3)])
        devices = discover_devices(backend)

        chosen = select_devices(" 2,0,2 ", devices)

        assert [d.torch_device for d in chosen] == ["cuda:2", "cuda:0"]

    def test_a_wrong_index_names_the_gpus_that_exist(self) -> None:
        devices = discover_devices(two_nvidia())

        with pytest.raises(DeviceSelectionError) as caught:
            select_devices("0,5", devices)

        message = str(caught.value)
        assert message.startswith("FLUXBOT_GPUS=0,5: no such GPU 5;")
        assert "0: NVIDIA H100 80GB HBM3" in message and "1: NVIDIA RTX 3060" in message
        assert isinstance(caught.value, ConfigError)  # the CLI reports it as a start-up error

    def test_an_index_on_a_machine_without_gpu_says_so(self) -> None:
        with pytest.raises(DeviceSelectionError, match="no GPU that torch can use"):
            select_devices("0", discover_devices(FakeBackend()))

    def test_garbage_is_refused(self) -> None:
        with pytest.raises(DeviceSelectionError, match="indexes such as"):
            select_devices("first", discover_devices(two_nvidia()))
