"""Speed profiles: what runs on which device, the fallbacks and their logged reasons."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fluxbot.config import MemoryProfile, SpeedProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine.speed import (
    DeviceFeatures,
    apply_speed_profile,
    compile_options,
    configure_compile_caches,
    fuse_qkv_,
    plan_speed,
)
from tests.engine.features import AMPERE, CPU, HOPPER


def test_each_profile_runs_as_asked_on_a_card_that_has_everything() -> None:
    fast = plan_speed(SpeedProfile.FAST, HOPPER)
    assert (fast.profile, fast.compile, fast.fp8, fast.reasons) == (
        SpeedProfile.FAST,
        True,
        True,
        (),
    )
    compiled = plan_speed(SpeedProfile.COMPILE, HOPPER)
    assert compiled.compile and not compiled.fp8
    assert not plan_speed(SpeedProfile.EAGER, HOPPER).compile


def test_only_fast_replays_its_denoising_steps_as_cuda_graphs() -> None:
    # Measured on an H200: fp8 gains 2-42 ms an image from step graphs, bf16 compile nothing.
    assert plan_speed(SpeedProfile.FAST, HOPPER).step_graphs
    assert not plan_speed(SpeedProfile.COMPILE, HOPPER).step_graphs
    assert not plan_speed(SpeedProfile.FAST, AMPERE).step_graphs  # fell back to compile


def test_auto_picks_the_fastest_profile_the_device_runs_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="fluxbot.engine.speed"):
        assert plan_speed(SpeedProfile.AUTO, HOPPER).profile is SpeedProfile.FAST
        assert "auto chose 'fast'" in caplog.text and "fp8 tensor cores" in caplog.text
        assert plan_speed(SpeedProfile.AUTO, AMPERE).profile is SpeedProfile.COMPILE
        assert "no fp8 tensor cores" in caplog.text
        cpu = plan_speed(SpeedProfile.AUTO, CPU)
        assert cpu.profile is SpeedProfile.EAGER and cpu.requested is SpeedProfile.AUTO
        assert "auto chose 'eager'" in caplog.text
        offload = plan_speed(SpeedProfile.AUTO, HOPPER, memory=MemoryProfile.OFFLOAD)
        assert offload.profile is SpeedProfile.EAGER
    assert plan_speed(SpeedProfile.AUTO, CPU, backend="eager").profile is SpeedProfile.COMPILE


def test_fast_without_fp8_tensor_cores_falls_back_to_compile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxbot.engine.speed"):
        plan = plan_speed(SpeedProfile.FAST, AMPERE)
    assert plan.profile is SpeedProfile.COMPILE and not plan.fp8 and plan.compile
    assert "compute capability 8.0" in plan.reasons[0]
    assert "fp8" in caplog.text


def test_compile_on_the_cpu_falls_back_to_eager_with_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxbot.engine.speed"):
        plan = plan_speed(SpeedProfile.FAST, CPU)
    assert plan.profile is SpeedProfile.EAGER and not plan.compile
    assert len(plan.reasons) == 2 and "Triton" in caplog.text


def test_offloading_memory_profiles_run_eager() -> None:
    for memory in (MemoryProfile.OFFLOAD, MemoryProfile.LOWVRAM):
        plan = plan_speed(SpeedProfile.COMPILE, HOPPER, memory=memory)
        assert plan.profile is SpeedProfile.EAGER
        assert str(memory) in plan.reasons[0]


def test_no_triton_means_no_compile() -> None:
    features = DeviceFeatures("cuda", (9, 0), triton=False, cudnn_attention=True, fp8_matmul=True)
    assert plan_speed(SpeedProfile.FAST, features).profile is SpeedProfile.EAGER


def test_attention_backend_choice_and_fallback() -> None:
    assert plan_speed(SpeedProfile.EAGER, HOPPER).attention == "default"
    assert plan_speed(SpeedProfile.EAGER, HOPPER, attention="cudnn").attention == "cudnn"
    plan = plan_speed(SpeedProfile.EAGER, CPU, attention="cudnn")
    assert plan.attention == "default" and "cuDNN" in plan.reasons[0]
    with pytest.raises(ValueError):
        plan_speed(SpeedProfile.EAGER, HOPPER, attention="sdpa-magic")
    with pytest.raises(ValueError):
        plan_speed(SpeedProfile.COMPILE, HOPPER, compile_mode="turbo")


def test_probe_on_the_cpu_finds_no_gpu_features() -> None:
    assert DeviceFeatures.probe("cpu") == CPU


def test_compile_caches_go_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    inductor = configure_compile_caches(tmp_path / "cache")
    assert inductor.is_relative_to(tmp_path / "cache")
    assert Path(os.environ["TRITON_CACHE_DIR"]).is_relative_to(tmp_path / "cache")


def test_eager_profile_fuses_qkv_drops_the_copies_and_keeps_the_pixels() -> None:
    from fluxbot.engine.pipeline import FluxRunner

    runner = FluxRunner.tiny()
    request = GenerationRequest(prompt="a red fox", seed=3, width=128, height=128)
    before = np.asarray(runner.generate([request])[0].images[0], dtype=np.int16)
    report = apply_speed_profile(runner.pipe, plan_speed(SpeedProfile.EAGER, CPU))
    attn = runner.pipe.transformer.transformer_blocks[0].attn
    assert report.fused_qkv and hasattr(attn, "to_qkv") and not hasattr(attn, "to_q")
    assert fuse_qkv_(runner.pipe.transformer)  # idempotent
    after = np.asarray(runner.generate([request])[0].images[0], dtype=np.int16)
    assert np.abs(after - before).max() <= 2  # fp32 rounding of a fused matmul


def test_fp8_runs_single_blocks_and_feed_forwards_fused_with_the_same_pixels_as_unfused() -> None:
    from fluxbot.engine.pipeline import FluxRunner

    request = GenerationRequest(prompt="a red fox", seed=3, width=128, height=128)
    plan = replace(plan_speed(SpeedProfile.EAGER, CPU), requested=SpeedProfile.FAST, fp8=True)
    images = {}
    for fused in (False, True):
        runner = FluxRunner.tiny()
        changes = {"fused_quantize": fused, "fused_feed_forward": fused}
        report = apply_speed_profile(runner.pipe, replace(plan, **changes))
        singles = runner.pipe.transformer.single_transformer_blocks
        doubles = runner.pipe.transformer.transformer_blocks
        assert report.fp8 is not None and report.fused_blocks == (len(singles) if fused else 0)
        assert report.fused_feed_forwards == (2 * len(doubles) if fused else 0)
        images[fused] = np.asarray(runner.generate([request])[0].images[0])
    assert np.array_equal(images[True], images[False])


def test_compile_options_carry_the_mode_or_inductor_s_persistent_reductions() -> None:
    plan = plan_speed(SpeedProfile.COMPILE, HOPPER)
    assert compile_options(plan) == {"fullgraph": True, "dynamic": True, "backend": "inductor"}
    persistent = replace(plan, persistent_reductions=True)
    assert compile_options(persistent)["options"] == {"triton.multi_kernel": 1}
    tuned = replace(persistent, compile_mode="reduce-overhead")
    assert compile_options(tuned)["mode"] == "reduce-overhead" and "options" not in compile_options(
        tuned
    )
    # Other backends (the CPU tests' "eager") take no Inductor options.
    assert "options" not in compile_options(replace(persistent, backend="eager"))
