"""Device discovery, selection, NVML status and vendor settings, on simulated machines."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fluxbot.config import ConfigError, MemoryProfile, load_settings
from fluxbot.devices.gpu import (
    DeviceInfo,
    DeviceSelectionError,
    GpuStatus,
    NvmlMonitor,
    RawDevice,
    TorchBackend,
    Vendor,
    _nvml_uuid,
    _pci_bus_id,
    apply_vendor_settings,
    device_status,
    discover_devices,
    format_device_table,
    gpu_report,
    select_devices,
    vendor_settings_for,
)

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


class TestNvmlMonitor:
    def test_init_once_and_shutdown_once(self) -> None:
        nvml = FakeNvml()
        monitor = NvmlMonitor(nvml)

        with monitor:
            assert monitor.start()
            monitor.read(h100())
        monitor.close()

        assert (nvml.inits, nvml.shutdowns) == (1, 1)
        assert monitor.read(h100()) is None  # closed

    def test_reads_every_field_in_plain_units(self) -> None:
        with NvmlMonitor(FakeNvml()) as monitor:
            reading = monitor.read(h100())

        assert reading is not None
        assert (reading.memory_used, reading.memory_total) == (10 * GIB, 80 * GIB)
        assert (reading.utilization, reading.temperature_c) == (97, 61)
        assert (reading.power_w, reading.power_limit_w) == (350.5, 700.0)
        assert (reading.sm_clock_mhz, reading.memory_clock_mhz) == (1980, 2619)

    def test_a_failing_call_gives_none_for_that_field_only(self) -> None:
        with NvmlMonitor(FakeNvml(fail=("temperature",))) as monitor:
            reading = monitor.read(h100())

        assert reading is not None
        assert reading.temperature_c is None
        assert reading.utilization == 97

    def test_nvml_that_cannot_start_gives_no_reading_and_no_shutdown(self) -> None:
        nvml = FakeNvml(fail=("nvmlInit",))

        with NvmlMonitor(nvml) as monitor:
            assert not monitor.available
            assert monitor.read(h100()) is None

        assert nvml.shutdowns == 0

    def test_missing_nvidia_ml_py_is_not_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_module(name: str) -> None:
            raise ImportError(f"No module named {name!r}")

        monkeypatch.setattr("fluxbot.devices.gpu.importlib.import_module", no_module)

        with NvmlMonitor() as monitor:
            assert not monitor.available

    def test_a_card_nvml_does_not_know_is_looked_up_once(self) -> None:
        nvml = FakeNvml(uuids=("GPU-other",))
        with NvmlMonitor(nvml) as monitor:
            assert monitor.read(h100()) is None
            assert monitor.read(h100()) is None

        assert nvml.lookups == 1

    def test_non_nvidia_devices_are_not_asked(self) -> None:
        amd = discover_devices(FakeBackend(cuda=[raw(0, "MI300X", 192)], hip="6.2"))[0]
        nvml = FakeNvml()
        with NvmlMonitor(nvml) as monitor:
            assert monitor.read(amd) is None

        assert nvml.lookups == 0


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


class TestVendorSettings:
    def test_tf32_on_ampere_and_newer_only(self) -> None:
        ampere = DeviceInfo(0, "cuda:0", "A100", Vendor.NVIDIA, 40 * GIB, (8, 0))
        turing = DeviceInfo(0, "cuda:0", "T4", Vendor.NVIDIA, 16 * GIB, (7, 5))

        assert vendor_settings_for(ampere).tf32_matmul
        assert not vendor_settings_for(turing).tf32_matmul

    @pytest.mark.parametrize(
        ("vendor", "device"),
        [
            (Vendor.AMD, "cuda:0"),
            (Vendor.INTEL, "xpu:0"),
            (Vendor.APPLE, "mps"),
            (Vendor.CPU, "cpu"),
        ],
    )
    def test_other_vendors_get_no_cuda_switches(self, vendor: Vendor, device: str) -> None:
        settings = vendor_settings_for(DeviceInfo(0, device, "x", vendor, GIB, (9, 4)))

        assert not settings.tf32_matmul

    @pytest.fixture
    def torch_flags(self) -> Iterator[None]:
        precision = torch.get_float32_matmul_precision()
        benchmark = torch.backends.cudnn.benchmark
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark = False
        yield
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.benchmark = benchmark

    @pytest.mark.usefixtures("torch_flags")
    def test_apply_switches_torch_flags_for_an_ampere_card(self) -> None:
        apply_vendor_settings(DeviceInfo(0, "cuda:0", "A100", Vendor.NVIDIA, GIB, (8, 0)))

        assert torch.get_float32_matmul_precision() == "high"
        assert not torch.backends.cudnn.benchmark  # the VAE gained nothing from it

    @pytest.mark.usefixtures("torch_flags")
    def test_apply_leaves_torch_alone_for_the_cpu(self) -> None:
        apply_vendor_settings(discover_devices(FakeBackend())[-1])

        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.benchmark


class TestTable:
    def test_rows_show_figures_and_dashes(self) -> None:
        full = GpuStatus(
            device="cuda:0",
            name="NVIDIA H100 80GB HBM3",
            vendor=Vendor.NVIDIA,
            memory_used=10 * GIB,
            memory_total=80 * GIB,
            utilization=97,
            temperature_c=61,
            power_w=350.5,
            power_limit_w=700.0,
            sm_clock_mhz=1980,
            memory_clock_mhz=2619,
            selected=True,
            profile="full",
            profile_reason="auto: full on cuda:0",
        )
        cpu = GpuStatus(device="cpu", name="Test CPU", vendor=Vendor.CPU)

        lines = format_device_table([full, cpu]).splitlines()

        assert lines[0].split() == [
            "DEVICE", "NAME", "MEMORY", "USED/TOTAL", "UTIL", "TEMP", "POWER", "SM/MEM", "CLOCK",
            "PROFILE",
        ]  # fmt: skip
        assert "10.0 / 80.0 GiB" in lines[1] and "97%" in lines[1] and "61 C" in lines[1]
        assert "350 / 700 W" in lines[1] and "1980 / 2619 MHz" in lines[1]
        assert lines[1].startswith("*")
        assert lines[2].split()[:2] == ["cpu", "Test"] and lines[2].count("-") >= 5
        assert lines[3].strip() == "auto: full on cuda:0"
        assert lines[1].index("NVIDIA") == lines[2].index("Test")  # columns line up


class TestGpuReport:
    def test_marks_the_selected_cards_and_their_profiles(self) -> None:
        backend = two_nvidia()
        backend.memory = {"cuda:0": (79 * GIB, 80 * GIB), "cuda:1": (11 * GIB, 12 * GIB)}
        devices = discover_devices(backend)
        settings = load_settings(gpus="all", memory_profile=MemoryProfile.AUTO)

        report = gpu_report(settings, devices, backend, nvml=FakeNvml(uuids=()))

        by_device = {s.device: s for s in report}
        assert by_device["cuda:0"].selected and by_device["cuda:0"].profile == "full"
        assert by_device["cuda:1"].profile == "lowvram"  # 12 GB Ampere, 48 GiB RAM available
        assert not by_device["cpu"].selected and by_device["cpu"].profile is None

    def test_an_impossible_profile_is_shown_as_refused(self) -> None:
        backend = two_nvidia()
        backend.memory = {"cuda:1": (11 * GIB, 12 * GIB)}
        settings = load_settings(gpus="1", memory_profile=MemoryProfile.FP8)

        report = gpu_report(settings, discover_devices(backend), backend, nvml=FakeNvml())

        status = next(s for s in report if s.device == "cuda:1")
        assert status.profile == "refused"
        assert status.profile_reason is not None and "compute capability" in status.profile_reason

    def test_a_wrong_selection_still_lists_the_devices(self) -> None:
        backend = two_nvidia()
        settings = load_settings(gpus="7")

        report = gpu_report(settings, discover_devices(backend), backend, nvml=FakeNvml())

        assert [s.device for s in report] == ["cuda:0", "cuda:1", "cpu"]
        assert not any(s.selected for s in report)


class TestNvmlIdentity:
    """torch's view of a card turned into the ids NVML looks it up by (as seen on an H200)."""

    def test_torch_uuid_gets_nvmls_prefix(self) -> None:
        bare = "69812685-5467-5349-b3ae-166984a8b3db"

        assert _nvml_uuid(bare) == f"GPU-{bare}"
        assert _nvml_uuid(f"GPU-{bare}") == f"GPU-{bare}"
        assert _nvml_uuid(None) is None

    def test_pci_bus_id_in_nvmls_form(self) -> None:
        props = SimpleNamespace(pci_domain_id=0, pci_bus_id=6, pci_device_id=0)

        assert _pci_bus_id(props) == "00000000:06:00.0"
        assert _pci_bus_id(SimpleNamespace()) is None
