"""Memory profiles: how a loaded pipeline is placed on its device (FLUXBOT_MEMORY_PROFILE).

fluxbot.engine.placement decides which profile a device gets (`auto`); this module applies one:

- full: every component resident in bf16.
- fp8: transformer block linears stored in fp8 (fp8 compute where the card has fp8 tensor
  cores, else weight-only), T5's linears weight-only fp8; everything resident.
- offload: diffusers' model CPU offload: each component moves to the device while it runs.
- lowvram: diffusers group offloading at leaf level, prefetching on a CUDA stream, plus VAE
  tiling: a 1024x1024 image in about 4 GB of device memory.

Call `apply_memory_profile` on a pipeline still on the CPU, then build the runner with
`placed=True`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fluxbot.config import MemoryProfile
from fluxbot.engine.fp8 import (
    QuantizeReport,
    flux_transformer_chooser,
    quantize_linears_,
    scaled_mm_supported,
    t5_chooser,
)

log = logging.getLogger(__name__)

LOWVRAM_TILE = 512  # VAE tile side in pixels under lowvram


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    requested: MemoryProfile
    profile: MemoryProfile
    fp8_compute: bool = False
    use_stream: bool = False
    reasons: tuple[str, ...] = ()


def plan_memory(
    requested: MemoryProfile, device: str, *, fp8_matmul: bool | None = None
) -> MemoryPlan:
    """The profile that will run on `device`; one it cannot run falls back with a logged reason.

    `auto` is fluxbot.engine.placement's to resolve; if it reaches here it means `full`.
    """
    dev = torch.device(device)
    reasons: list[str] = []
    profile = requested
    if profile is MemoryProfile.AUTO:
        reasons.append("memory profile 'auto' was not resolved by placement; using 'full'")
        profile = MemoryProfile.FULL
    if dev.type == "cpu" and profile in (MemoryProfile.OFFLOAD, MemoryProfile.LOWVRAM):
        reasons.append(f"'{profile}' offloads to system RAM, which is where a CPU run is already")
        profile = MemoryProfile.FULL
    fp8_compute = False
    if profile is MemoryProfile.FP8:
        fp8_compute = scaled_mm_supported(dev) if fp8_matmul is None else fp8_matmul
        if not fp8_compute:
            reasons.append(
                f"{device} has no fp8 matmul; fp8 weights are stored and multiplied in bf16 "
                "(saves the same memory, runs slower)"
            )
    use_stream = False
    if profile is MemoryProfile.LOWVRAM:
        use_stream = dev.type in ("cuda", "xpu")
        if not use_stream:
            reasons.append(f"{dev.type} has no transfer streams; lowvram loads layers in line")
    for reason in reasons:
        log.warning("memory: %s", reason)
    return MemoryPlan(requested, profile, fp8_compute, use_stream, tuple(reasons))


@dataclass(frozen=True, slots=True)
class MemoryReport:
    plan: MemoryPlan
    seconds: float
    resident_bytes: int
    transformer_fp8: QuantizeReport | None = None
    t5_fp8: QuantizeReport | None = None


def apply_memory_profile(
    pipe: Any, plan: MemoryPlan, device: str, devices: Mapping[str, str] | None = None
) -> MemoryReport:
    """Place a pipeline (on the CPU) on `device` according to `plan`, in place.

    `devices` (component name -> device) splits a resident profile over several cards, e.g.
    the text encoders on one and the transformer and VAE on another (fluxbot.engine.placement).
    """
    started = time.perf_counter()
    dev = torch.device(device)
    transformer_fp8 = t5_fp8 = None
    from fluxbot.engine.speed import fuse_qkv_

    # Fused q/k/v is a load-time rewrite of the weights: before quantising (the fused weights
    # are what get quantised) and before offload hooks (which must see the final modules).
    # Under `full` it runs on the device, where concatenating 2G parameters takes no time
    # (on the CPU it took ~15 s of the H200 run's 24 s load).
    if plan.profile is not MemoryProfile.FULL:
        fuse_qkv_(pipe.transformer)
        fuse_qkv_(pipe.vae)
    match plan.profile:
        case MemoryProfile.FULL:
            _place(pipe, dev, devices)
            fuse_qkv_(pipe.transformer)
            fuse_qkv_(pipe.vae)
        case MemoryProfile.FP8:
            chooser = flux_transformer_chooser(dynamic=plan.fp8_compute, modulation=True)
            transformer_fp8 = quantize_linears_(
                pipe.transformer, chooser, _target(dev, devices, "transformer")
            )
            t5_fp8 = quantize_linears_(
                pipe.text_encoder_2, t5_chooser, _target(dev, devices, "text_encoder_2")
            )
            _place(pipe, dev, devices)
        case MemoryProfile.OFFLOAD:
            pipe.enable_model_cpu_offload(device=dev)
        case MemoryProfile.LOWVRAM:
            pipe.enable_group_offload(
                onload_device=dev,
                offload_device=torch.device("cpu"),
                offload_type="leaf_level",
                use_stream=plan.use_stream,
            )
            enable_vae_tiling(pipe.vae, LOWVRAM_TILE)
        case _:
            raise ValueError(f"cannot apply memory profile {plan.profile!r}")
    return MemoryReport(
        plan=plan,
        seconds=time.perf_counter() - started,
        resident_bytes=resident_bytes(pipe, dev),
        transformer_fp8=transformer_fp8,
        t5_fp8=t5_fp8,
    )


def _target(device: torch.device, devices: Mapping[str, str] | None, name: str) -> torch.device:
    return torch.device(devices[name]) if devices and name in devices else device


def _place(pipe: Any, device: torch.device, devices: Mapping[str, str] | None) -> None:
    """Each component straight onto its own device (`devices`, else `device`): never the whole
    pipeline onto one card first, which a split exists because it cannot hold."""
    if not devices:
        pipe.to(device)
        return
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            where = _target(device, devices, name)
            component.to(where)
            log.info("memory: %s on %s", name, where)
    pin_execution_device(pipe, _target(device, devices, "transformer"))


def pin_execution_device(pipe: Any, device: torch.device) -> None:
    """Make the denoising loop run on `device`. For a split pipeline diffusers would pick the
    first accelerator component in name order, the text encoders' card (each encoder itself
    runs where its weights are either way)."""
    base = type(pipe)
    if getattr(base, "_pinned_device", None) is not None:
        base = base.__mro__[1]
    pipe.__class__ = type(
        base.__name__,
        (base,),
        {
            "_pinned_device": device,
            "_execution_device": property(lambda self: self._pinned_device),
        },
    )


def enable_vae_tiling(vae: Any, tile: int) -> None:
    """Decode in overlapping tiles of `tile` pixels (FLUX's VAE tiles at 1024 by default,
    which would not tile a 1024x1024 image at all)."""
    vae.enable_tiling()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.tile_sample_min_size = tile
    vae.tile_latent_min_size = tile // factor


def resident_bytes(pipe: Any, device: torch.device) -> int:
    """Bytes of parameters and buffers currently on `device` (an offloaded model shows little)."""
    total = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if tensor.device.type == device.type:
                total += tensor.numel() * tensor.element_size()
    return total
