"""The single blocks' one-pass GELU + concat + fp8 quantise: same numbers as the unfused path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

from fluxbot.engine import fp8_fused, fp8_kernel
from fluxbot.engine.fp8 import FP8_DTYPE, Fp8Linear
from fluxbot.engine.fp8_fused import (
    fusable,
    fuse_single_blocks_,
    gelu_cat_quantize,
    gelu_cat_quantize_reference,
    unfuse_single_blocks_,
)
from tests.engine.fp8_interpreted import (
    assert_matches_allowing_for_the_interpreter,
    run_kernel_interpreted,
)
from tests.engine.single_blocks import (
    DIM,
    HEADS,
    assert_compiles_whole_with_the_same_numbers,
    fp8_block,
    single_block_inputs,
)


def _block(seed: int = 0) -> Any:
    return fp8_block(FluxSingleTransformerBlock, "single_transformer_blocks", seed)


def _inputs() -> dict[str, object]:
    return single_block_inputs(torch.bfloat16)


def test_a_fused_block_gives_the_unfused_blocks_output_bit_for_bit() -> None:
    block, inputs = _block(), _inputs()
    assert fusable(block) and type(block.proj_out) is Fp8Linear
    with torch.inference_mode():
        expected = block(**inputs)
        assert fuse_single_blocks_(block) == 1
        got = block(**inputs)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert unfuse_single_blocks_(block) == 1 and "forward" not in vars(block)


def test_a_diffusers_whose_block_forward_changed_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The fused forward is a copy of diffusers 0.42's with one part replaced: another diffusers'
    # block code must not be swapped for it.
    block = _block()
    assert fusable(block)
    monkeypatch.setattr(fp8_fused, "FOLLOWED_FORWARD", "0000")
    assert not fusable(block) and fuse_single_blocks_(block) == 0
    assert "keep their own" in caplog.text


def test_the_fused_block_compiles_whole_and_keeps_its_numbers() -> None:
    block, inputs = _block(), _inputs()
    fuse_single_blocks_(block)
    assert_compiles_whole_with_the_same_numbers(block, inputs)


def test_a_block_whose_proj_out_is_not_a_plain_fp8_linear_keeps_diffusers_forward() -> None:
    bf16 = FluxSingleTransformerBlock(DIM, HEADS, DIM // HEADS).to(torch.bfloat16)
    assert not fusable(bf16) and fuse_single_blocks_(bf16) == 0
    block, inputs = _block(), _inputs()
    fuse_single_blocks_(block)
    with torch.inference_mode():
        fused = block(**inputs)
        # A style's LoRA wraps proj_out after the fact: the block must fall back, not fail.
        block.proj_out = torch.nn.Sequential(block.proj_out)
        fallback = block(**inputs)
    assert torch.allclose(fallback[1].float(), fused[1].float())


def test_the_op_on_the_cpu_is_the_reference() -> None:
    g = torch.Generator().manual_seed(3)
    attn = torch.randn(10, 48, generator=g).to(torch.bfloat16)
    mlp = (torch.randn(10, 80, generator=g) * 4).to(torch.bfloat16)
    q, scale = gelu_cat_quantize(attn, mlp)
    rq, rscale = gelu_cat_quantize_reference(attn, mlp)
    assert q.dtype == FP8_DTYPE and q.shape == (10, 128) and scale.shape == (10, 1)
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8)) and torch.equal(scale, rscale)


@pytest.mark.skipif(not fp8_kernel.available(), reason="Triton is not installed")
@pytest.mark.parametrize(("rows", "a", "h"), [(7, 48, 80), (3, 3072 // 16, 12288 // 16)])
def test_the_triton_kernel_matches_the_reference_in_triton_s_interpreter(
    rows: int, a: int, h: int, tmp_path: Path
) -> None:
    g = torch.Generator().manual_seed(rows)
    # Rows of very different magnitude, and the amax sometimes in the attention part.
    magnitude = torch.logspace(-2, 2, rows).unsqueeze(1)
    attn = (torch.randn(rows, a, generator=g) * magnitude).to(torch.bfloat16)
    mlp = (torch.randn(rows, h, generator=g) * magnitude).to(torch.bfloat16)
    attn[0, 5] = 1000.0
    strided = torch.randn(rows, h + 16, generator=g).to(torch.bfloat16)[:, :h]
    strided.copy_(mlp)  # a row stride that is not the width
    q, scale = run_kernel_interpreted(attn, strided, tmp_path)
    rq, rscale = gelu_cat_quantize_reference(attn, mlp)
    assert q.dtype == FP8_DTYPE and q.shape == (rows, a + h)
    # GELU's tanh as a sigmoid can round a bf16 value one step apart: scales agree to < 1 %.
    assert torch.allclose(scale, rscale, rtol=1e-2, atol=0)
    assert float(scale[0]) == pytest.approx(1000.0 / 448.0, rel=1e-3)
    assert_matches_allowing_for_the_interpreter(q, scale, rq, rscale)
