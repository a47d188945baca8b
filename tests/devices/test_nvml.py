"""NvmlMonitor: one init and shutdown, plain units, failures give None fields."""

from __future__ import annotations

import pytest

from fluxbot.devices.discovery import discover_devices
from fluxbot.devices.nvml import NvmlMonitor
from tests.devices.fakes import GIB, FakeBackend, FakeNvml, h100, raw


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

        monkeypatch.setattr("fluxbot.devices.nvml.importlib.import_module", no_module)

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
