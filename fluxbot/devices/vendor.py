"""Process-wide torch switches per device vendor (TF32 on Ampere and newer, ...), decided and
applied in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from fluxbot.devices.discovery import DeviceInfo, Vendor

log = logging.getLogger(__name__)


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
