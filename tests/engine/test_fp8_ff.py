"""The double blocks' feed-forwards with GELU + fp8 quantise in one pass: same numbers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxTransformerBlock

from fluxbot.engine import fp8_ff, fp8_kernel
from fluxbot.engine.fp8 import FP8_DTYPE, Fp8Linear
from fluxbot.engine.fp8_ff import fusable, fuse_feed_forwards_, unfuse_feed_forwards_
from fluxbot.engine.fp8_fused import gelu_cat_quantize, gelu_cat_quantize_reference
from tests.engine.fp8_interpreted import (
    assert_matches_allowing_for_the_interpreter,
    run_kernel_interpreted,
)
from tests.engine.single_blocks import DIM, HEADS, fp8_block, single_block_inputs


def _block(seed: int = 0) -> Any:
    return fp8_block(FluxTransformerBlock, "transformer_blocks", seed)


def _run(block: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return block(**single_block_inputs(torch.bfloat16))  # type: ignore[no-any-return]


def test_fused_feed_forwards_give_the_unfused_blocks_output_bit_for_bit() -> None:
    block = _block()
    assert fusable(block.ff) and fusable(block.ff_context)
    assert type(block.ff.net[2]) is Fp8Linear
    expected = _run(block)
    assert fuse_feed_forwards_(block) == 2
    got = _run(block)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert unfuse_feed_forwards_(block) == 2 and "forward" not in vars(block.ff)


def test_the_fused_block_compiles_whole_and_keeps_its_numbers() -> None:
    block = _block()
    fuse_feed_forwards_(block)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    expected = _run(block)
    got = _run(compiled)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_a_diffusers_whose_feed_forward_changed_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    block = _block()
    monkeypatch.setattr(fp8_ff, "FOLLOWED_GELU", "0000")
    with caplog.at_level(logging.WARNING):
        assert not fusable(block.ff) and fuse_feed_forwards_(block) == 0
    assert "2 feed-forward(s)" in caplog.text and "keep their own" in caplog.text


def test_bf16_feed_forwards_and_a_lora_wrapped_down_projection_keep_diffusers_forward() -> None:
    plain = FluxTransformerBlock(DIM, HEADS, DIM // HEADS).to(torch.bfloat16)
    assert not fusable(plain.ff) and fuse_feed_forwards_(plain) == 0
    block = _block()
    fuse_feed_forwards_(block)
    fused = _run(block)
    # A style's LoRA wraps the down-projection after the fact: fall back, not fail.
    block.ff.net[2] = torch.nn.Sequential(block.ff.net[2])
    fallback = _run(block)
    assert torch.equal(fallback[1], fused[1])


def test_the_op_without_attention_columns_is_gelu_and_quantise() -> None:
    g = torch.Generator().manual_seed(5)
    mlp = (torch.randn(6, 80, generator=g) * 4).to(torch.bfloat16)
    q, scale = gelu_cat_quantize(mlp[:, :0], mlp)
    assert q.dtype == FP8_DTYPE and q.shape == (6, 80)
    rq, rscale = gelu_cat_quantize_reference(mlp[:, :0], mlp)
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8)) and torch.equal(scale, rscale)


@pytest.mark.skipif(not fp8_kernel.available(), reason="Triton is not installed")
def test_the_kernel_with_no_attention_columns_matches_the_reference_in_the_interpreter(
    tmp_path: Path,
) -> None:
    g = torch.Generator().manual_seed(7)
    magnitude = torch.logspace(-2, 2, 5).unsqueeze(1)
    mlp = (torch.randn(5, 96, generator=g) * magnitude).to(torch.bfloat16)
    q, scale = run_kernel_interpreted(mlp[:, :0], mlp, tmp_path)
    rq, rscale = gelu_cat_quantize_reference(mlp[:, :0], mlp)
    assert q.shape == rq.shape == (5, 96)
    # GELU's tanh as a sigmoid can round a bf16 value one step apart: scales agree to < 1 %.
    assert torch.allclose(scale, rscale, rtol=1e-2, atol=0)
    # All of these values went through GELU, which the interpreter rounds to bf16 by truncation
    # (the card rounds to nearest): more of them land one fp8 step apart than in a concat.
    assert_matches_allowing_for_the_interpreter(q, scale, rq, rscale, max_share_off=0.12)
