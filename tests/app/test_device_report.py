"""The device report: statuses marked with selection and placement, and the CLI table."""

from __future__ import annotations

import pytest

from fluxbot.app.device_report import format_device_table, gpu_report, live_statuses
from fluxbot.config import MemoryProfile, load_settings
from fluxbot.devices.discovery import DeviceSelectionError, Vendor, discover_devices
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.devices.status import GpuStatus
from tests.devices.fakes import GIB, FakeNvml, two_nvidia


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

    def test_a_wrong_selection_fails_as_run_does(self) -> None:
        backend = two_nvidia()
        settings = load_settings(gpus="7")

        with pytest.raises(DeviceSelectionError, match="no such GPU 7"):
            gpu_report(settings, discover_devices(backend), backend, nvml=FakeNvml())

    def test_the_tiny_model_is_not_planned_on_gpus_either(self) -> None:
        backend = two_nvidia()
        settings = load_settings(gpus="1", model="tiny-random", memory_profile=MemoryProfile.FP8)

        report = gpu_report(settings, discover_devices(backend), backend, nvml=FakeNvml())

        by_device = {s.device: s for s in report}
        assert by_device["cuda:1"].profile == "full" and by_device["cuda:0"].profile is None
        assert "tiny-random" in (by_device["cuda:1"].profile_reason or "")


def test_live_statuses_start_the_monitor_and_read_every_device() -> None:
    nvml = FakeNvml()
    monitor = NvmlMonitor(nvml)
    cpu = discover_devices()[-1]

    statuses = live_statuses([cpu], monitor)
    statuses = live_statuses([cpu], monitor)  # a running monitor is not started again

    assert nvml.inits == 1
    assert list(statuses) == ["cpu"]
    assert statuses["cpu"].memory_total is not None and statuses["cpu"].memory_total > 0
    monitor.close()
