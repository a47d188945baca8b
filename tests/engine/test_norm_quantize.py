"""The single blocks' LayerNorm + modulation + fp8 quantise in one op: the same numbers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

from fluxbot.config import SpeedProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine import norm_quantize, norm_quantize_kernel
from fluxbot.engine.fp8 import FP8_DTYPE
from fluxbot.engine.fp8_fused import fuse_single_blocks_
from fluxbot.engine.norm_quantize import (
    drop_norm_quantize_,
    eligible,
    norm_modulate_quantize,
    norm_modulate_quantize_reference,
    use_norm_quantize_,
)
from fluxbot.engine.qk_rope import drop_qk_norm_rope_, use_qk_norm_rope_
from fluxbot.engine.speed import apply_speed_profile, plan_speed
from tests.engine.features import CPU, HOPPER
from tests.engine.single_blocks import (
    assert_compiles_whole_with_the_same_numbers,
    fp8_block,
    single_block_inputs,
)
from tests.engine.triton_interpreted import run_interpreted


def _block(seed: int = 0) -> Any:
    """A single block as `fast` leaves it: fused q/k/v, fp8 linears, the one-pass GELU + concat
    + quantise forward and the q/k processor."""
    block = fp8_block(FluxSingleTransformerBlock, "single_transformer_blocks", seed, fused_qkv=True)
    assert fuse_single_blocks_(block) == 1 and use_qk_norm_rope_(block) == 1
    return block


def _run(block: Any) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return tuple(block(**single_block_inputs(torch.bfloat16)))


def test_the_one_op_front_gives_the_blocks_output_bit_for_bit() -> None:
    block = _block()
    assert eligible(block)
    expected = _run(block)
    assert use_norm_quantize_(block) == 1
    got = _run(block)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert drop_norm_quantize_(block) == 1
    assert torch.equal(_run(block)[1], expected[1])


def test_the_block_compiles_whole_with_the_same_numbers() -> None:
    block = _block()
    use_norm_quantize_(block)
    assert_compiles_whole_with_the_same_numbers(block, single_block_inputs(torch.bfloat16))


def test_a_lora_on_a_projection_or_the_processor_dropped_falls_back_to_the_fused_forward() -> None:
    block = _block()
    use_norm_quantize_(block)
    front = _run(block)
    # A style's LoRA wraps the q/k/v projection after the fact: the block must fall back.
    block.attn.to_qkv = torch.nn.Sequential(block.attn.to_qkv)
    assert torch.equal(_run(block)[1], front[1])
    other = _block()
    use_norm_quantize_(other)
    drop_qk_norm_rope_(other)
    assert torch.equal(_run(other)[1], front[1])


def test_blocks_that_differ_from_what_it_follows_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bf16 = FluxSingleTransformerBlock(64, 2, 32).to(torch.bfloat16)
    assert not eligible(bf16) and use_norm_quantize_(bf16) == 0
    unfused = fp8_block(FluxSingleTransformerBlock, "single_transformer_blocks")
    fuse_single_blocks_(unfused)
    use_qk_norm_rope_(unfused)
    assert not eligible(unfused)  # q/k/v not fused: three linears, three quantises
    without_processor = _block()
    drop_qk_norm_rope_(without_processor)
    assert not eligible(without_processor)
    block = _block()
    monkeypatch.setattr(norm_quantize, "FOLLOWED_NORM", "0000")
    assert not eligible(block) and use_norm_quantize_(block) == 0


def test_the_op_on_the_cpu_is_the_reference() -> None:
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(2, 7, 48, generator=g) * 3).to(torch.bfloat16)
    emb = torch.randn(2, 3 * 48, generator=g).to(torch.bfloat16)
    shift, scale, _ = emb.chunk(3, dim=1)
    q, s = norm_modulate_quantize(x[:, :3], x[:, 3:], shift, scale, 1e-6)
    assert q.dtype == FP8_DTYPE and q.shape == (14, 48) and s.shape == (14, 1)
    rq, rs = norm_modulate_quantize_reference(x[:, :3], x[:, 3:], shift, scale, 1e-6)
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8)) and torch.equal(s, rs)
    # the rows in order, text first: the same as the whole as one segment
    whole, whole_scale = norm_modulate_quantize(x[:, :0], x, shift, scale, 1e-6)
    assert torch.equal(q.view(torch.uint8), whole.view(torch.uint8))
    assert torch.equal(s, whole_scale)


_INTERPRETED = """
import sys, torch
from fluxbot.engine import norm_quantize_kernel
txt, img, shift, scale = torch.load(sys.argv[1])
rows = img.shape[0] * (txt.shape[1] + img.shape[1])
q = torch.empty(rows, img.shape[2], dtype=torch.float8_e4m3fn)
s = torch.empty(q.shape[0], 1)
norm_quantize_kernel.launch(txt, img, shift, scale, 1e-6, q, s)
torch.save((q, s), sys.argv[2])
"""


@pytest.mark.skipif(not norm_quantize_kernel.available(), reason="Triton is not installed")
def test_the_triton_kernel_matches_the_reference_in_triton_s_interpreter(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    # Rows of very different magnitude and offset, two images with their own modulation, and
    # shift/scale as views into the modulation projection's output (its row stride).
    magnitude = torch.logspace(-1, 2, 6).reshape(1, 6, 1)
    x = ((torch.randn(2, 6, 96, generator=g) + 0.5) * magnitude).to(torch.bfloat16)
    emb = (torch.randn(2, 3 * 96, generator=g) * 2).to(torch.bfloat16)
    shift, scale, _ = emb.chunk(3, dim=1)
    # The text's rows from a view with a row stride that is not the width.
    wide = torch.zeros(2, 2, 128, dtype=torch.bfloat16)
    wide[..., :96] = x[:, :2]
    txt, img = wide[..., :96], x[:, 2:]
    q, s = run_interpreted(_INTERPRETED, (txt, img, shift, scale), tmp_path)
    rq, rs = norm_modulate_quantize_reference(x[:, :2], img, shift, scale, 1e-6)
    assert q.dtype == FP8_DTYPE and q.shape == rq.shape == (12, 96)
    # The interpreter rounds to bf16 by truncation at each of the four roundings and converts
    # to fp8 its own way, losing the carry when a value rounds up to a power of two (127.9 ->
    # 64; tests/engine/fp8_interpreted.py); the card rounds to nearest. So the rows agree to
    # rounding, not bit for bit: scales within 2 %, each value within one fp8 step (and the
    # scales' difference) or half a power of two, most bytes equal. Small values get 3 units of
    # the row's scale besides: `+ shift` can cancel most of LayerNorm(x) * (1 + scale), leaving
    # its bf16 rounding (each rounding up to a step apart in the interpreter) in the result.
    assert torch.allclose(s, rs, rtol=2e-2, atol=0)
    got, want = q.float() * s, rq.float() * rs
    one_step = (got - want).abs() <= 0.15 * want.abs() + 3 * rs
    lost_carry = (2 * got - want).abs() <= 0.15 * want.abs()
    assert bool((one_step | lost_carry).all())
    assert float((q.view(torch.uint8) == rq.view(torch.uint8)).float().mean()) > 0.8


def test_fast_uses_it_and_it_keeps_the_pixels() -> None:
    from fluxbot.engine.pipeline import FluxRunner

    assert plan_speed(SpeedProfile.FAST, HOPPER).norm_quantize
    assert not plan_speed(SpeedProfile.COMPILE, HOPPER).norm_quantize
    request = GenerationRequest(prompt="a red fox", seed=3, width=128, height=128)
    plan = replace(
        plan_speed(SpeedProfile.EAGER, CPU), requested=SpeedProfile.FAST, fp8=True, qk_rope=True
    )
    images = {}
    for on in (False, True):
        runner = FluxRunner.tiny()
        report = apply_speed_profile(runner.pipe, replace(plan, norm_quantize=on))
        transformer = runner.pipe.transformer
        blocks = len(transformer.single_transformer_blocks) + len(transformer.transformer_blocks)
        assert report.norm_quantize_blocks == (blocks if on else 0)
        images[on] = np.asarray(runner.generate([request])[0].images[0])
    assert np.array_equal(images[True], images[False])
