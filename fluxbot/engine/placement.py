"""Memory profiles and replica placement: which profile each device runs, and on which cards.

Pure functions over plain data (a `DeviceInfo`, its free memory, the system RAM available), so
every machine shape can be tested on a CPU-only box. Profiles (FLUXBOT_MEMORY_PROFILE):

- full: every component resident in bf16.
- fp8: transformer (and T5) weights in fp8, resident; NVIDIA compute capability 8.9 or newer.
- offload: model CPU offload; a component moves to the GPU only while it runs.
- lowvram: leaf-level group offloading on CUDA streams plus VAE tiling; fits 1024x1024 in 4 GB.

`auto` picks per device, best quality first (full, fp8, offload, lowvram). With several GPUs,
a card that holds the model gets its own replica; cards that cannot are paired (text encoders
on one, transformer on another) before anything is offloaded to the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from fluxbot.config import TINY_RANDOM, ConfigError, MemoryProfile
from fluxbot.devices.discovery import DeviceInfo, Vendor

log = logging.getLogger(__name__)

GB = 1_000_000_000
FP8_MIN_CAPABILITY = (8, 9)  # Ada; fp8 tensor-core matmul


class ProfileError(ConfigError):
    """No memory profile (or not the one asked for) can run on the selected devices."""


def needs_placement(model: str, devices: Sequence[DeviceInfo]) -> bool:
    """Whether memory planning applies: not for the tiny model, nor when only a CPU runs it
    (the model then sits in system RAM as it is). `run` and `fluxbot gpus` both ask this."""
    return model != TINY_RANDOM and any(d.is_gpu for d in devices)


def unplanned_reason(model: str) -> str:
    """Why a selected device runs the model without memory planning."""
    if model == TINY_RANDOM:
        return "tiny-random: a few MB, loaded whole on each selected device"
    return "no GPU selected: the model runs on the CPU in system RAM (very slow)"


class Component(StrEnum):
    """FluxPipeline's component names, so a placement maps straight onto the pipeline."""

    TRANSFORMER = "transformer"
    TEXT_ENCODER = "text_encoder"  # CLIP-L
    TEXT_ENCODER_2 = "text_encoder_2"  # T5-XXL
    VAE = "vae"


@dataclass(frozen=True)
class ModelFootprint:
    """Bytes a model's components take in bf16, and the working memory around them.

    Workspaces are sized for one 1024x1024 image; bigger jobs lean on the OOM retry.
    """

    transformer: int
    text_encoder: int
    text_encoder_2: int
    vae: int
    transformer_workspace: int  # activations, VAE decode, cuBLAS workspace, allocator slack
    encoder_workspace: int  # a card that only runs the text encoders
    lowvram_device: int  # what leaf-level group offloading keeps on the card
    ram_margin: int  # beyond the weights, for anything that keeps them in system RAM

    def weights(self, profile: MemoryProfile) -> dict[Component, int]:
        """Each component's weight bytes under `profile` (fp8/int8: one byte a weight)."""
        quantised = profile is MemoryProfile.FP8
        return {
            Component.TRANSFORMER: self.transformer // 2 if quantised else self.transformer,
            Component.TEXT_ENCODER: self.text_encoder,
            Component.TEXT_ENCODER_2: self.text_encoder_2 // 2
            if quantised
            else self.text_encoder_2,
            Component.VAE: self.vae,
        }

    def resident(self, profile: MemoryProfile) -> int:
        """Device bytes for every component resident on one card (full or fp8)."""
        return sum(self.weights(profile).values()) + self.transformer_workspace

    def transformer_side(self, profile: MemoryProfile) -> int:
        """Device bytes for the transformer-and-VAE card of a split replica."""
        w = self.weights(profile)
        return w[Component.TRANSFORMER] + w[Component.VAE] + self.transformer_workspace

    def encoder_side(self, profile: MemoryProfile) -> int:
        """Device bytes for the text-encoder card of a split replica."""
        w = self.weights(profile)
        return w[Component.TEXT_ENCODER] + w[Component.TEXT_ENCODER_2] + self.encoder_workspace

    def offload_device(self) -> int:
        """Model CPU offload holds the largest component (the transformer) at a time."""
        return self.transformer + self.transformer_workspace

    def ram_for_weights(self) -> int:
        """System RAM for all bf16 weights kept there (offload, lowvram, the CPU path)."""
        return sum(self.weights(MemoryProfile.FULL).values()) + self.ram_margin


# FLUX.1-schnell, bf16 safetensors sizes. Workspace figures are estimates for 1024x1024:
# ~35.7 GB for full, ~19.1 GB for fp8, ~25.8 GB of VRAM and ~34.7 GB of RAM for offload.
FLUX_TRANSFORMER_BYTES = 23_800_000_000
FLUX_T5_XXL_BYTES = 9_500_000_000
FLUX_CLIP_L_BYTES = 250_000_000
FLUX_VAE_BYTES = 170_000_000

FLUX_SCHNELL = ModelFootprint(
    transformer=FLUX_TRANSFORMER_BYTES,
    text_encoder=FLUX_CLIP_L_BYTES,
    text_encoder_2=FLUX_T5_XXL_BYTES,
    vae=FLUX_VAE_BYTES,
    transformer_workspace=2 * GB,
    encoder_workspace=GB // 2,
    lowvram_device=3 * GB,
    ram_margin=1 * GB,
)

# lowvram before offload: measured on an H200 (bench/results), group offloading with a CUDA
# stream made a 1024x1024 image in 2.6 s, whole-model offload in 28 s.
AUTO_ORDER = (
    MemoryProfile.FULL,
    MemoryProfile.FP8,
    MemoryProfile.LOWVRAM,
    MemoryProfile.OFFLOAD,
)
RESIDENT = (MemoryProfile.FULL, MemoryProfile.FP8)
OFFLOADING = (MemoryProfile.LOWVRAM, MemoryProfile.OFFLOAD)


@dataclass(frozen=True)
class ProfileChoice:
    profile: MemoryProfile
    reason: str


@dataclass(frozen=True)
class ReplicaPlan:
    """One pipeline replica: the device of each component, its profile, and why."""

    devices: dict[Component, str]
    profile: MemoryProfile
    reason: str

    @property
    def primary(self) -> str:
        """The device that runs the denoising loop; the replica's worker is keyed on it."""
        return self.devices[Component.TRANSFORMER]

    @property
    def is_split(self) -> bool:
        return len(set(self.devices.values())) > 1


@dataclass(frozen=True)
class UnusedDevice:
    device: str
    reason: str


@dataclass(frozen=True)
class Placement:
    replicas: tuple[ReplicaPlan, ...]
    unused: tuple[UnusedDevice, ...] = ()


def _gb(value: int) -> str:
    return f"{value / GB:.1f} GB"


def _where(device: DeviceInfo, free: int) -> str:
    return f"{device.torch_device} ({device.name}, {_gb(free)} free)"


def fp8_capable(device: DeviceInfo) -> bool:
    """fp8 matmul needs an NVIDIA card of compute capability 8.9+ (ROCm reports other numbers)."""
    return (
        device.vendor is Vendor.NVIDIA
        and device.capability is not None
        and device.capability >= FP8_MIN_CAPABILITY
    )


def _usable_free(device: DeviceInfo, free: int, ram: int) -> int:
    """Apple silicon and the CPU draw on system RAM, so the smaller figure is what counts."""
    if device.vendor in (Vendor.APPLE, Vendor.CPU):
        return min(free, ram)
    return free


def _problem(
    profile: MemoryProfile, device: DeviceInfo, free: int, ram: int, fp: ModelFootprint
) -> str | None:
    """Why `device` cannot run `profile`, or None when it can."""
    if profile is MemoryProfile.FP8 and not fp8_capable(device):
        return (
            "fp8 needs an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
            f"{device.torch_device} is {_kind(device)}"
        )
    if profile in OFFLOADING and device.vendor is Vendor.CPU:
        return f"{profile} moves weights between system RAM and a GPU; on the CPU they are in RAM"
    if profile in OFFLOADING and device.vendor is Vendor.APPLE:
        return f"{profile} saves nothing on Apple silicon, where the GPU shares system memory"
    free = _usable_free(device, free, ram)
    if device.vendor is Vendor.CPU:
        need = fp.ram_for_weights()
        if free < need:
            return (
                f"the CPU path keeps every component in RAM: needs ~{_gb(need)}, "
                f"{_gb(free)} is available"
            )
        return None
    if profile in RESIDENT:
        need = fp.resident(profile)
        if free < need:
            return f"{profile} needs ~{_gb(need)} free on {device.torch_device}, it has {_gb(free)}"
        return None
    need = fp.offload_device() if profile is MemoryProfile.OFFLOAD else fp.lowvram_device
    if free < need:
        return f"{profile} needs ~{_gb(need)} free on {device.torch_device}, it has {_gb(free)}"
    if ram < fp.ram_for_weights():
        return (
            f"{profile} keeps the weights in system RAM: needs ~{_gb(fp.ram_for_weights())} "
            f"available, {_gb(ram)} is left"
        )
    return None


def _kind(device: DeviceInfo) -> str:
    if device.vendor is Vendor.NVIDIA and device.capability is not None:
        major, minor = device.capability
        return f"{device.name} (compute capability {major}.{minor})"
    if device.vendor is Vendor.CPU:
        return "the CPU"
    return f"{device.name} ({device.vendor})"


def _fits(
    profile: MemoryProfile, device: DeviceInfo, free: int, ram: int, fp: ModelFootprint
) -> str:
    """What `profile` does on `device`, with the figures that make it fit."""
    where = _where(device, _usable_free(device, free, ram))
    if device.vendor is Vendor.CPU:
        return f"{profile} on {where}: every component in system RAM (~{_gb(fp.ram_for_weights())})"
    if profile is MemoryProfile.FULL:
        return f"full on {where}: every component resident in bf16 (~{_gb(fp.resident(profile))})"
    if profile is MemoryProfile.FP8:
        return f"fp8 on {where}: transformer and T5 in fp8, resident (~{_gb(fp.resident(profile))})"
    ram_need = _gb(fp.ram_for_weights())
    if profile is MemoryProfile.OFFLOAD:
        return (
            f"offload on {where}: each component on the GPU only while it runs "
            f"(~{_gb(fp.offload_device())} on the card, ~{ram_need} of RAM)"
        )
    return (
        f"lowvram on {where}: leaf-level group offloading with VAE tiling "
        f"(~{_gb(fp.lowvram_device)} on the card, ~{ram_need} of RAM)"
    )


def choose_profile(
    requested: MemoryProfile,
    device: DeviceInfo,
    free_bytes: int,
    ram_available: int,
    footprint: ModelFootprint = FLUX_SCHNELL,
) -> ProfileChoice:
    """The profile one device runs alone: `requested` if it can, else `ProfileError`.

    Under `auto`, the best profile that fits (full, fp8, lowvram, offload), with the reasons
    the better ones did not. On the CPU only `full` exists.
    """
    auto = requested is MemoryProfile.AUTO
    if not auto:
        profiles: tuple[MemoryProfile, ...] = (requested,)
    elif device.vendor is Vendor.CPU:
        profiles = (MemoryProfile.FULL,)
    else:
        profiles = AUTO_ORDER
    fit = _first_fit(_Card(device, free_bytes), profiles, auto, ram_available, footprint)
    if isinstance(fit, ProfileChoice):
        return fit
    problems = "; ".join(fit.passed_over)
    if not auto:
        raise ProfileError(f"FLUXBOT_MEMORY_PROFILE={requested}: {problems}")
    where = _where(device, _usable_free(device, free_bytes, ram_available))
    raise ProfileError(f"no memory profile fits {where}: {problems}")


@dataclass(frozen=True)
class _Card:
    """A GPU still looking for a place, with the reasons better profiles did not fit."""

    info: DeviceInfo
    free: int
    passed_over: tuple[str, ...] = ()


def _first_fit(
    card: _Card,
    profiles: Sequence[MemoryProfile],
    auto: bool,
    ram: int,
    fp: ModelFootprint,
) -> ProfileChoice | _Card:
    """The first of `profiles` the card can run, or the card with the reasons none could."""
    passed_over = list(card.passed_over)
    for profile in profiles:
        problem = _problem(profile, card.info, card.free, ram, fp)
        if problem is None:
            reason = _fits(profile, card.info, card.free, ram, fp)
            if auto:
                reason = "auto: " + reason
                if passed_over:
                    reason += "; not better because " + "; ".join(passed_over)
            return ProfileChoice(profile, reason)
        passed_over.append(problem)
    return _Card(card.info, card.free, tuple(passed_over))


def _single(device: DeviceInfo, choice: ProfileChoice) -> ReplicaPlan:
    return ReplicaPlan(
        devices=dict.fromkeys(Component, device.torch_device),
        profile=choice.profile,
        reason=choice.reason,
    )


def plan_placement(
    requested: MemoryProfile,
    devices_with_free_memory: Sequence[tuple[DeviceInfo, int]],
    ram_available: int,
    footprint: ModelFootprint = FLUX_SCHNELL,
) -> Placement:
    """Place replicas on the selected devices, and log each choice and why.

    1. a card that holds the model resident (full, else fp8 under auto) gets its own replica;
    2. cards left over are paired, text encoders on one and transformer on the other;
    3. what is still left offloads to system RAM (lowvram, else offload) while RAM lasts.

    An explicit profile that some selected device cannot run raises `ProfileError`; under
    auto such a device is left unused (with the reason), unless no device can run at all.
    """
    auto = requested is MemoryProfile.AUTO
    resident = RESIDENT if auto else tuple(p for p in RESIDENT if p is requested)
    offloading = OFFLOADING if auto else tuple(p for p in OFFLOADING if p is requested)
    replicas: list[ReplicaPlan] = []
    unused: list[UnusedDevice] = []
    ram_left = ram_available

    cards: list[_Card] = []
    for info, free in devices_with_free_memory:
        if info.vendor is Vendor.CPU:
            replicas.append(
                _single(info, choose_profile(requested, info, free, ram_left, footprint))
            )
            ram_left -= footprint.ram_for_weights()
            continue
        card = _place_alone(_Card(info, free), resident, auto, ram_left, footprint)
        if isinstance(card, ReplicaPlan):
            replicas.append(card)
        else:
            cards.append(card)

    for profile in resident:
        pairs, cards = _pair(cards, profile, footprint)
        replicas.extend(_split_plan(profile, t, e, auto, footprint) for t, e in pairs)

    for card in cards:
        placed = _place_alone(card, offloading, auto, ram_left, footprint)
        if isinstance(placed, ReplicaPlan):
            replicas.append(placed)
            ram_left -= footprint.ram_for_weights()
            continue
        reasons = list(placed.passed_over)
        if resident and len(devices_with_free_memory) > 1:
            reasons.append("no pair of cards can share the model either")
        unused.append(UnusedDevice(card.info.torch_device, "; ".join(reasons)))

    if unused and not auto:
        details = "; ".join(f"{u.device}: {u.reason}" for u in unused)
        raise ProfileError(
            f"FLUXBOT_MEMORY_PROFILE={requested} cannot run on {details}. "
            "Use FLUXBOT_MEMORY_PROFILE=auto, or leave that GPU out with FLUXBOT_GPUS"
        )
    if not replicas:
        details = "; ".join(f"{u.device}: {u.reason}" for u in unused) or "no device selected"
        raise ProfileError(f"no memory profile fits any selected device: {details}")

    order = {info.torch_device: i for i, (info, _) in enumerate(devices_with_free_memory)}
    replicas.sort(key=lambda plan: order[plan.primary])
    for plan in replicas:
        log.info("replica on %s: %s", plan.primary, plan.reason)
    for device in unused:
        log.warning("%s left unused: %s", device.device, device.reason)
    return Placement(tuple(replicas), tuple(unused))


def _place_alone(
    card: _Card, profiles: Sequence[MemoryProfile], auto: bool, ram: int, fp: ModelFootprint
) -> ReplicaPlan | _Card:
    """A single-card replica with the first of `profiles` that fits, or the card with reasons."""
    fit = _first_fit(card, profiles, auto, ram, fp)
    return _single(card.info, fit) if isinstance(fit, ProfileChoice) else fit


def _pair(
    cards: list[_Card], profile: MemoryProfile, fp: ModelFootprint
) -> tuple[list[tuple[_Card, _Card]], list[_Card]]:
    """Pair cards for split replicas: the roomiest card that holds the transformer side with
    the smallest card that holds the text encoders. Returns the pairs and the cards left."""

    def can_run(info: DeviceInfo) -> bool:
        discrete = info.vendor not in (Vendor.APPLE, Vendor.CPU)
        return discrete and (profile is not MemoryProfile.FP8 or fp8_capable(info))

    left = sorted(cards, key=lambda card: card.free, reverse=True)
    pairs: list[tuple[_Card, _Card]] = []
    while True:
        transformer = next(
            (c for c in left if can_run(c.info) and c.free >= fp.transformer_side(profile)), None
        )
        encoders = [
            c
            for c in left
            if c is not transformer and can_run(c.info) and c.free >= fp.encoder_side(profile)
        ]
        if transformer is None or not encoders:
            break
        encoder = min(encoders, key=lambda card: card.free)
        pairs.append((transformer, encoder))
        left = [c for c in left if c is not transformer and c is not encoder]
    return pairs, [c for c in cards if any(c is kept for kept in left)]


def _split_plan(
    profile: MemoryProfile, transformer: _Card, encoder: _Card, auto: bool, fp: ModelFootprint
) -> ReplicaPlan:
    t_device, e_device = transformer.info.torch_device, encoder.info.torch_device
    alone = "; ".join(dict.fromkeys([*transformer.passed_over, *encoder.passed_over]))
    reason = (
        f"{profile} split over {t_device} + {e_device}: no single card holds the model "
        f"({alone}), together they do, so nothing is offloaded to system RAM. "
        f"Transformer and VAE on {t_device} (~{_gb(fp.transformer_side(profile))} of "
        f"{_gb(transformer.free)} free), text encoders on {e_device} "
        f"(~{_gb(fp.encoder_side(profile))} of {_gb(encoder.free)} free)"
    )
    return ReplicaPlan(
        devices={
            Component.TRANSFORMER: t_device,
            Component.VAE: t_device,
            Component.TEXT_ENCODER: e_device,
            Component.TEXT_ENCODER_2: e_device,
        },
        profile=profile,
        reason=("auto: " + reason) if auto else reason,
    )
