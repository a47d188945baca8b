"""Memory profiles and replica placement on simulated machines (free memory and RAM as data)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pytest

from fluxbot.config import ConfigError, MemoryProfile
from fluxbot.devices.discovery import DeviceInfo, Vendor
from fluxbot.engine.placement import (
    FLUX_SCHNELL,
    Component,
    ModelFootprint,
    ProfileError,
    ReplicaPlan,
    choose_profile,
    plan_placement,
)

GB = 1_000_000_000
GIB = 1024**3
AUTO, FULL, FP8 = MemoryProfile.AUTO, MemoryProfile.FULL, MemoryProfile.FP8
OFFLOAD, LOWVRAM = MemoryProfile.OFFLOAD, MemoryProfile.LOWVRAM
PLENTY_RAM = 200 * GB


def nvidia(index: int, name: str, gib: int, capability: tuple[int, int]) -> DeviceInfo:
    return DeviceInfo(index, f"cuda:{index}", name, Vendor.NVIDIA, gib * GIB, capability)


def h100(i: int = 0) -> DeviceInfo:
    return nvidia(i, "NVIDIA H100 80GB HBM3", 80, (9, 0))


def rtx4090(i: int = 0) -> DeviceInfo:
    return nvidia(i, "NVIDIA GeForce RTX 4090", 24, (8, 9))


def rtx3090(i: int = 0) -> DeviceInfo:
    return nvidia(i, "NVIDIA GeForce RTX 3090", 24, (8, 6))


def rtx3060(i: int = 0) -> DeviceInfo:
    return nvidia(i, "NVIDIA GeForce RTX 3060", 12, (8, 6))


def gtx1650(i: int = 0) -> DeviceInfo:
    return nvidia(i, "NVIDIA GeForce GTX 1650", 4, (7, 5))


def ada16(i: int) -> DeviceInfo:
    return nvidia(i, "NVIDIA GeForce RTX 4060 Ti", 16, (8, 9))


def ampere16(i: int) -> DeviceInfo:
    return nvidia(i, "NVIDIA RTX A4000", 16, (8, 6))


def v100_32(i: int = 0) -> DeviceInfo:
    return nvidia(i, "Tesla V100-SXM2-32GB", 32, (7, 0))


MI300X = DeviceInfo(0, "cuda:0", "AMD Instinct MI300X", Vendor.AMD, 192 * GIB, (9, 4))
MPS = DeviceInfo(0, "mps", "Apple M2 Max GPU (MPS)", Vendor.APPLE, 48 * GB, None)
CPU = DeviceInfo(None, "cpu", "AMD EPYC", Vendor.CPU, 128 * GB, None)


def idle(device: DeviceInfo) -> tuple[DeviceInfo, int]:
    """A card with nothing on it: the CUDA context takes ~0.5 GB."""
    return device, device.total_memory - GB // 2


class TestChooseProfileAuto:
    def test_h100_holds_everything_in_bf16(self) -> None:
        choice = choose_profile(AUTO, *idle(h100()), PLENTY_RAM)

        assert choice.profile is FULL
        assert choice.reason.startswith("auto: full on cuda:0 (NVIDIA H100 80GB HBM3")

    def test_rtx4090_gets_fp8_and_says_why_not_full(self) -> None:
        choice = choose_profile(AUTO, *idle(rtx4090()), PLENTY_RAM)

        assert choice.profile is FP8
        assert "full needs ~35.7 GB free on cuda:0, it has 25.3 GB" in choice.reason

    def test_rtx3090_has_no_fp8_and_prefers_lowvram_to_offload(self) -> None:
        choice = choose_profile(AUTO, *idle(rtx3090()), 64 * GIB)

        assert choice.profile is LOWVRAM
        assert "compute capability 8.6" in choice.reason

    def test_rtx3060_runs_lowvram_with_enough_ram(self) -> None:
        assert choose_profile(AUTO, *idle(rtx3060()), 64 * GIB).profile is LOWVRAM

    def test_rtx3060_with_32_gb_of_ram_is_refused_naming_ram(self) -> None:
        with pytest.raises(ProfileError, match=re.escape("system RAM: needs ~34.7 GB available")):
            choose_profile(AUTO, *idle(rtx3060()), 28 * GB)

    def test_a_4_gb_card_runs_lowvram(self) -> None:
        choice = choose_profile(AUTO, *idle(gtx1650()), 64 * GIB)

        assert choice.profile is LOWVRAM
        assert "leaf-level group offloading" in choice.reason

    def test_a_card_with_2_gb_free_is_refused(self) -> None:
        with pytest.raises(ProfileError, match="no memory profile fits cuda:0"):
            choose_profile(AUTO, gtx1650(), 2 * GB, 64 * GIB)

    def test_busy_h100_falls_back_to_fp8(self) -> None:
        choice = choose_profile(AUTO, h100(), 30 * GB, PLENTY_RAM)

        assert choice.profile is FP8

    def test_rocm_card_never_gets_fp8(self) -> None:
        assert choose_profile(AUTO, MI300X, 150 * GB, PLENTY_RAM).profile is FULL
        assert choose_profile(AUTO, MI300X, 24 * GB, PLENTY_RAM).profile is LOWVRAM

    def test_big_mac_runs_full(self) -> None:
        assert choose_profile(AUTO, MPS, 48 * GB, 60 * GB).profile is FULL

    def test_mac_memory_is_bounded_by_system_ram(self) -> None:
        with pytest.raises(ProfileError, match="saves nothing on Apple silicon"):
            choose_profile(AUTO, MPS, 48 * GB, 20 * GB)

    def test_cpu_is_always_full(self) -> None:
        choice = choose_profile(AUTO, CPU, 100 * GB, 100 * GB)

        assert choice.profile is FULL
        assert "system RAM" in choice.reason

    def test_cpu_with_too_little_ram_is_refused(self) -> None:
        with pytest.raises(ProfileError, match="CPU path keeps every component in RAM"):
            choose_profile(AUTO, CPU, 16 * GB, 16 * GB)

    def test_a_small_model_fits_small_cards(self) -> None:
        tiny = ModelFootprint(
            transformer=10_000_000,
            text_encoder=1_000_000,
            text_encoder_2=5_000_000,
            vae=1_000_000,
            transformer_workspace=100_000_000,
            encoder_workspace=10_000_000,
            lowvram_device=50_000_000,
            ram_margin=10_000_000,
        )

        assert choose_profile(AUTO, *idle(gtx1650()), 8 * GB, tiny).profile is FULL


class TestChooseProfileExplicit:
    def test_a_profile_that_fits_is_honoured(self) -> None:
        choice = choose_profile(OFFLOAD, *idle(h100()), PLENTY_RAM)

        assert choice.profile is OFFLOAD
        assert not choice.reason.startswith("auto")

    @pytest.mark.parametrize(
        "device",
        [rtx3060(), MI300X, MPS, CPU],
        ids=["ampere", "rocm", "mps", "cpu"],
    )
    def test_fp8_needs_nvidia_ada_or_newer(self, device: DeviceInfo) -> None:
        with pytest.raises(ProfileError, match=re.escape("compute capability 8.9")) as caught:
            choose_profile(FP8, device, 200 * GB, PLENTY_RAM)

        assert str(caught.value).startswith("FLUXBOT_MEMORY_PROFILE=fp8: ")
        assert isinstance(caught.value, ConfigError)

    def test_fp8_on_hopper(self) -> None:
        assert choose_profile(FP8, *idle(h100()), PLENTY_RAM).profile is FP8

    def test_full_on_a_24_gb_card_says_what_is_missing(self) -> None:
        with pytest.raises(
            ProfileError, match=re.escape("full needs ~35.7 GB free on cuda:0, it has 25.3")
        ):
            choose_profile(FULL, *idle(rtx4090()), PLENTY_RAM)

    def test_offload_without_ram_is_refused(self) -> None:
        with pytest.raises(ProfileError, match="offload keeps the weights in system RAM"):
            choose_profile(OFFLOAD, *idle(h100()), 20 * GB)

    @pytest.mark.parametrize("profile", [OFFLOAD, LOWVRAM])
    def test_offloading_on_the_cpu_is_refused(self, profile: MemoryProfile) -> None:
        with pytest.raises(ProfileError, match="on the CPU they are in RAM"):
            choose_profile(profile, CPU, 100 * GB, 100 * GB)

    def test_full_on_the_cpu(self) -> None:
        assert choose_profile(FULL, CPU, 100 * GB, 100 * GB).profile is FULL


def replicas_placed(
    requested: MemoryProfile, cards: Sequence[tuple[DeviceInfo, int]], ram: int
) -> tuple[ReplicaPlan, ...]:
    return plan_placement(requested, cards, ram).replicas


def primaries(plans: Sequence[ReplicaPlan]) -> list[tuple[str, MemoryProfile]]:
    return [(plan.primary, plan.profile) for plan in plans]


class TestPlanReplicas:
    def test_one_replica_per_gpu_when_each_holds_the_model(self) -> None:
        plans = replicas_placed(AUTO, [idle(h100(0)), idle(h100(1))], PLENTY_RAM)

        assert primaries(plans) == [("cuda:0", FULL), ("cuda:1", FULL)]
        assert plans[0].devices == dict.fromkeys(Component, "cuda:0")
        assert not plans[0].is_split

    def test_mixed_cards_each_get_their_own_profile(self) -> None:
        cards = [idle(h100(0)), idle(rtx4090(1)), idle(rtx3060(2))]

        plans = replicas_placed(AUTO, cards, 64 * GIB)

        assert primaries(plans) == [("cuda:0", FULL), ("cuda:1", FP8), ("cuda:2", LOWVRAM)]

    def test_two_16_gb_ada_cards_share_one_fp8_replica(self) -> None:
        plans = replicas_placed(AUTO, [idle(ada16(0)), idle(ada16(1))], 64 * GIB)

        assert len(plans) == 1
        plan = plans[0]
        assert plan.profile is FP8 and plan.is_split
        assert plan.devices[Component.TRANSFORMER] == plan.devices[Component.VAE]
        assert plan.devices[Component.TEXT_ENCODER] == plan.devices[Component.TEXT_ENCODER_2]
        assert plan.devices[Component.TRANSFORMER] != plan.devices[Component.TEXT_ENCODER]
        assert "no single card holds the model" in plan.reason
        assert "nothing is offloaded to system RAM" in plan.reason

    def test_transformer_on_the_big_card_encoders_on_the_small_one_in_bf16(self) -> None:
        plans = replicas_placed(AUTO, [idle(rtx3060(0)), idle(v100_32(1))], 64 * GIB)

        assert len(plans) == 1
        assert plans[0].profile is FULL
        assert plans[0].devices[Component.TRANSFORMER] == "cuda:1"
        assert plans[0].devices[Component.TEXT_ENCODER_2] == "cuda:0"

    def test_the_encoder_card_is_the_smallest_that_fits(self) -> None:
        cards = [idle(v100_32(0)), idle(rtx3090(1)), idle(rtx3060(2))]

        plans = replicas_placed(AUTO, cards, 64 * GIB)

        split = next(p for p in plans if p.is_split)
        assert split.devices[Component.TRANSFORMER] == "cuda:0"
        assert split.devices[Component.TEXT_ENCODER] == "cuda:2"
        assert ("cuda:1", LOWVRAM) in primaries(plans)

    def test_two_16_gb_ampere_cards_cannot_split_bf16_and_share_the_ram(self) -> None:
        placement = plan_placement(AUTO, [idle(ampere16(0)), idle(ampere16(1))], 64 * GIB)

        assert primaries(placement.replicas) == [("cuda:0", LOWVRAM)]
        assert [u.device for u in placement.unused] == ["cuda:1"]
        assert "system RAM" in placement.unused[0].reason

    def test_with_enough_ram_both_ampere_cards_run_lowvram(self) -> None:
        plans = replicas_placed(AUTO, [idle(ampere16(0)), idle(ampere16(1))], 128 * GIB)

        assert primaries(plans) == [("cuda:0", LOWVRAM), ("cuda:1", LOWVRAM)]

    def test_a_4090_alone_and_a_pair_of_16_gb_cards(self) -> None:
        cards = [idle(ada16(0)), idle(rtx4090(1)), idle(ada16(2))]

        plans = replicas_placed(AUTO, cards, 64 * GIB)

        assert [(p.primary, p.profile, p.is_split) for p in plans] == [
            ("cuda:0", FP8, True),
            ("cuda:1", FP8, False),
        ]

    def test_an_explicit_profile_a_card_cannot_run_stops_start_up(self) -> None:
        with pytest.raises(ProfileError) as caught:
            replicas_placed(FULL, [idle(h100(0)), idle(rtx3060(1))], PLENTY_RAM)

        message = str(caught.value)
        assert message.startswith("FLUXBOT_MEMORY_PROFILE=full cannot run on cuda:1:")
        assert "FLUXBOT_GPUS" in message

    def test_explicit_full_may_split_across_cards(self) -> None:
        plans = replicas_placed(FULL, [idle(v100_32(0)), idle(rtx3060(1))], PLENTY_RAM)

        assert len(plans) == 1 and plans[0].is_split and plans[0].profile is FULL

    def test_explicit_lowvram_needs_ram_for_every_replica(self) -> None:
        with pytest.raises(ProfileError, match="cuda:1: lowvram keeps the weights in system RAM"):
            replicas_placed(LOWVRAM, [idle(rtx3060(0)), idle(rtx3060(1))], 64 * GIB)

    def test_nothing_fits_anywhere(self) -> None:
        with pytest.raises(ProfileError, match="no memory profile fits any selected device"):
            replicas_placed(AUTO, [(gtx1650(0), 2 * GB)], 64 * GIB)

    def test_cpu(self) -> None:
        plans = replicas_placed(AUTO, [(CPU, 100 * GB)], 100 * GB)

        assert primaries(plans) == [("cpu", FULL)]

    def test_mac(self) -> None:
        assert primaries(replicas_placed(AUTO, [(MPS, 48 * GB)], 60 * GB)) == [("mps", FULL)]

    def test_each_choice_is_logged_with_its_reason(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="fluxbot.engine.placement"):
            plan_placement(AUTO, [idle(ampere16(0)), idle(ampere16(1))], 64 * GIB)

        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("replica on cuda:0: auto: lowvram") for m in messages)
        assert any(m.startswith("cuda:1 left unused:") for m in messages)


def test_footprint_figures_match_the_documented_model() -> None:
    """The bf16 sizes the design rests on; a change here changes every profile decision."""
    assert FLUX_SCHNELL.resident(FULL) == pytest.approx(35.72 * GB)
    assert FLUX_SCHNELL.resident(FP8) == pytest.approx(19.07 * GB)
    assert FLUX_SCHNELL.offload_device() == pytest.approx(25.8 * GB)
    assert FLUX_SCHNELL.ram_for_weights() == pytest.approx(34.72 * GB)
