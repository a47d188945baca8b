"""Memory profiles: fallbacks with reasons, and that fp8 placement really saves memory."""

from __future__ import annotations

import logging

import pytest
import torch

from fluxbot.config import MemoryProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine.fp8 import Fp8Linear
from fluxbot.engine.memory_profiles import (
    apply_memory_profile,
    enable_vae_tiling,
    plan_memory,
    resident_bytes,
)
from fluxbot.engine.pipeline import FluxRunner, load_flux_pipeline


def test_auto_that_reaches_here_means_full(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxbot.engine.memory_profiles"):
        plan = plan_memory(MemoryProfile.AUTO, "cpu")
    assert plan.profile is MemoryProfile.FULL and "placement" in caplog.text


@pytest.mark.parametrize("profile", [MemoryProfile.OFFLOAD, MemoryProfile.LOWVRAM])
def test_offloading_on_the_cpu_falls_back_to_full(profile: MemoryProfile) -> None:
    plan = plan_memory(profile, "cpu")
    assert plan.profile is MemoryProfile.FULL and str(profile) in plan.reasons[0]


def test_fp8_without_fp8_matmul_stores_fp8_and_says_so() -> None:
    plan = plan_memory(MemoryProfile.FP8, "cpu", fp8_matmul=False)
    assert plan.profile is MemoryProfile.FP8 and not plan.fp8_compute
    assert "no fp8 matmul" in plan.reasons[0]


def test_lowvram_on_cuda_uses_streams() -> None:
    plan = plan_memory(MemoryProfile.LOWVRAM, "cuda:0")
    assert plan.profile is MemoryProfile.LOWVRAM and plan.use_stream and not plan.reasons


def test_fp8_profile_shrinks_the_weights_and_still_generates() -> None:
    full = load_flux_pipeline("tiny-random", torch.float32)
    full_report = apply_memory_profile(full, plan_memory(MemoryProfile.FULL, "cpu"), "cpu")
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    plan = plan_memory(MemoryProfile.FP8, "cpu", fp8_matmul=False)
    report = apply_memory_profile(pipe, plan, "cpu")
    assert report.transformer_fp8 is not None and report.transformer_fp8.converted > 0
    assert report.t5_fp8 is not None and report.t5_fp8.converted > 0
    assert report.resident_bytes < full_report.resident_bytes
    assert isinstance(pipe.transformer.transformer_blocks[0].attn.to_qkv, Fp8Linear)
    runner = FluxRunner(pipe, "cpu", model_name="tiny-random", placed=True)
    result = runner.generate([GenerationRequest(prompt="a cat", seed=1, width=64, height=64)])
    assert result[0].images[0].size == (64, 64)
    assert resident_bytes(pipe, torch.device("cpu")) == report.resident_bytes


def test_vae_tiling_tiles_a_1024_image() -> None:
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    enable_vae_tiling(pipe.vae, 512)
    assert pipe.vae.use_tiling
    assert pipe.vae.tile_sample_min_size == 512
    assert pipe.vae.tile_latent_min_size == 512 // 8


@pytest.mark.parametrize("profile", [MemoryProfile.FULL, MemoryProfile.FP8])
def test_a_split_puts_each_component_straight_onto_its_card(profile: MemoryProfile) -> None:
    # The split exists because the primary card cannot hold everything: the text encoders
    # must go to their own card directly, never through the primary. "meta" stands in for
    # the primary card here, "cpu" for the encoders' card.
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    devices = {"transformer": "meta", "vae": "meta", "text_encoder": "cpu", "text_encoder_2": "cpu"}
    plan = plan_memory(profile, "cpu", fp8_matmul=False)
    apply_memory_profile(pipe, plan, "meta", devices)
    for name, where in devices.items():
        tensors = [*getattr(pipe, name).parameters(), *getattr(pipe, name).buffers()]
        assert {t.device.type for t in tensors} == {where}, name
    # The denoising loop runs on the transformer's card, not the first one diffusers finds.
    assert pipe._execution_device == torch.device("meta")


def test_a_split_pipeline_generates_on_the_transformers_device() -> None:
    pipe = load_flux_pipeline("tiny-random", torch.float32)
    devices = {"transformer": "cpu", "vae": "cpu", "text_encoder": "meta", "text_encoder_2": "meta"}
    assert pipe._execution_device == torch.device("cpu")
    apply_memory_profile(pipe, plan_memory(MemoryProfile.FULL, "cpu"), "cpu", devices)
    assert pipe._execution_device == torch.device("cpu")  # unpinned, diffusers says "meta"
    assert type(pipe).__name__ == "FluxPipeline" and pipe.transformer.device.type == "cpu"
