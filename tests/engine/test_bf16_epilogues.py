"""bf16 blocks with GELU in the GEMM's epilogue and no concat before proj_out: same numbers."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

from fluxbot.config import SpeedProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine import bf16_epilogues
from fluxbot.engine.bf16_epilogues import (
    concat_linear,
    drop_gemm_epilogues_,
    linear_gelu_tanh,
    use_gemm_epilogues_,
)
from fluxbot.engine.speed import apply_speed_profile, plan_speed
from tests.engine.features import CPU, HOPPER
from tests.engine.single_blocks import (
    DIM,
    HEADS,
    assert_compiles_whole_with_the_same_numbers,
    single_block_inputs,
)


def _block(dtype: torch.dtype = torch.float32) -> FluxSingleTransformerBlock:
    torch.manual_seed(0)
    return FluxSingleTransformerBlock(DIM, HEADS, DIM // HEADS).to(dtype).eval()


def _inputs(dtype: torch.dtype = torch.float32) -> dict[str, object]:
    return single_block_inputs(dtype)


def test_concat_linear_is_the_linear_of_the_concat() -> None:
    g = torch.Generator().manual_seed(2)
    a, m = torch.randn(10, 16, generator=g), torch.randn(10, 48, generator=g)
    weight, bias = torch.randn(32, 64, generator=g), torch.randn(32, generator=g)
    expected = F.linear(torch.cat([a, m], dim=-1), weight, bias)
    assert torch.allclose(concat_linear(a, m, weight, bias), expected, atol=1e-5)


def test_linear_gelu_is_the_tanh_gelu_of_the_linear() -> None:
    g = torch.Generator().manual_seed(3)
    x, weight, bias = (torch.randn(*s, generator=g) for s in ((7, 16), (24, 16), (24,)))
    expected = F.gelu(F.linear(x, weight, bias), approximate="tanh")
    assert torch.equal(linear_gelu_tanh(x, weight, bias), expected)
    # Not the exact (erf) GELU: the two differ by more than rounding on these inputs.
    assert not torch.allclose(linear_gelu_tanh(x, weight, bias), F.gelu(F.linear(x, weight, bias)))


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.07)])
def test_a_single_block_gives_diffusers_numbers(dtype: torch.dtype, atol: float) -> None:
    block, inputs = _block(dtype), _inputs(dtype)
    with torch.inference_mode():
        expected = block(**inputs)
        assert use_gemm_epilogues_(block) == 1
        got = block(**inputs)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.allclose(a.float(), b.float(), atol=atol)
    assert drop_gemm_epilogues_(block) == 1 and "forward" not in vars(block)


def test_the_feed_forward_gelu_runs_in_its_gemm() -> None:
    torch.manual_seed(4)
    ff = FeedForward(DIM, DIM, activation_fn="gelu-approximate").eval()
    x = torch.randn(2, 5, DIM)
    with torch.inference_mode():
        expected = ff(x)
        assert use_gemm_epilogues_(ff) == 1
        got = ff(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert "forward" in vars(ff.net[0])


def test_the_block_compiles_whole_and_keeps_its_numbers() -> None:
    block, inputs = _block(), _inputs()
    use_gemm_epilogues_(block)
    assert_compiles_whole_with_the_same_numbers(block, inputs)


def test_a_lora_wrapped_linear_falls_back_to_diffusers_forward() -> None:
    block, inputs = _block(), _inputs()
    use_gemm_epilogues_(block)
    with torch.inference_mode():
        split = block(**inputs)
        # A style's LoRA wraps proj_out after the fact: the block must fall back, not fail.
        block.proj_out = torch.nn.Sequential(block.proj_out)
        fallback = block(**inputs)
    assert torch.allclose(fallback[1], split[1], atol=1e-5)


def test_another_diffusers_keeps_its_own_forwards(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bf16_epilogues, "FOLLOWED_FORWARD", "0000")
    monkeypatch.setattr(bf16_epilogues, "FOLLOWED_GELU", "0000")
    ff = FeedForward(DIM, DIM, activation_fn="gelu-approximate")
    holder = torch.nn.ModuleList([_block(), ff])
    with caplog.at_level(logging.INFO, logger="fluxbot.engine.bf16_epilogues"):
        assert use_gemm_epilogues_(holder) == 0
    assert "FluxSingleTransformerBlock, GELU keep(s) diffusers' own forward" in caplog.text


def test_only_bf16_compile_plans_the_epilogues() -> None:
    assert plan_speed(SpeedProfile.COMPILE, HOPPER).gemm_epilogues
    assert not plan_speed(SpeedProfile.FAST, HOPPER).gemm_epilogues  # fp8 has its own kernel
    assert not plan_speed(SpeedProfile.EAGER, HOPPER).gemm_epilogues


def test_compile_profile_applies_them_to_every_block_with_the_same_pixels() -> None:
    from fluxbot.engine.pipeline import FluxRunner

    request = GenerationRequest(prompt="a red fox", seed=3, width=128, height=128)
    plan = replace(plan_speed(SpeedProfile.EAGER, CPU), gemm_epilogues=True)
    images = {}
    for epilogues in (False, True):
        runner = FluxRunner.tiny()
        report = apply_speed_profile(runner.pipe, replace(plan, gemm_epilogues=epilogues))
        transformer = runner.pipe.transformer
        # every single block, and both feed-forwards (image and text) of every double block
        expected = len(transformer.single_transformer_blocks) + 2 * len(
            transformer.transformer_blocks
        )
        assert report.epilogue_modules == (expected if epilogues else 0)
        images[epilogues] = np.asarray(runner.generate([request])[0].images[0], dtype=np.int16)
    assert np.abs(images[True] - images[False]).max() <= 2  # fp32 rounding of split matmuls
