"""Vendor settings: which torch switches each kind of device gets, and applying them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from fluxbot.devices.discovery import DeviceInfo, Vendor, discover_devices
from fluxbot.devices.vendor import apply_vendor_settings, vendor_settings_for
from tests.devices.fakes import GIB, FakeBackend


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
