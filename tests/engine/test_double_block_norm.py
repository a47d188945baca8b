"""The double blocks' norm1s as the q/k/v projections' fp8 rows in one op: the same numbers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxTransformerBlock

from fluxbot.engine import double_block_norm
from fluxbot.engine.double_block_norm import (
    drop_double_norm_quantize_,
    eligible,
    use_double_norm_quantize_,
)
from fluxbot.engine.fp8_ff import fuse_feed_forwards_
from fluxbot.engine.qk_rope import drop_qk_norm_rope_, use_qk_norm_rope_
from tests.engine.single_blocks import (
    DIM,
    HEADS,
    assert_compiles_whole_with_the_same_numbers,
    fp8_block,
    single_block_inputs,
)


def _block(seed: int = 0) -> Any:
    """A double block as `fast` leaves it: fused q/k/v, fp8 linears, the one-pass
    feed-forwards and the q/k processor."""
    block = fp8_block(FluxTransformerBlock, "transformer_blocks", seed, fused_qkv=True)
    assert fuse_feed_forwards_(block) == 2 and use_qk_norm_rope_(block) == 1
    return block


def _run(block: Any) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return tuple(block(**single_block_inputs(torch.bfloat16)))


def test_the_one_op_norm1s_give_the_blocks_output_bit_for_bit() -> None:
    block = _block()
    assert eligible(block)
    expected = _run(block)
    assert use_double_norm_quantize_(block) == 1
    got = _run(block)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert drop_double_norm_quantize_(block) == 1 and "forward" not in vars(block)


def test_the_block_compiles_whole_with_the_same_numbers() -> None:
    block = _block()
    use_double_norm_quantize_(block)
    assert_compiles_whole_with_the_same_numbers(block, single_block_inputs(torch.bfloat16))


def test_a_lora_on_the_text_projection_or_the_processor_dropped_falls_back() -> None:
    block = _block()
    use_double_norm_quantize_(block)
    expected = _run(block)
    block.attn.to_added_qkv = torch.nn.Sequential(block.attn.to_added_qkv)
    assert torch.equal(_run(block)[1], expected[1])
    other = _block()
    use_double_norm_quantize_(other)
    drop_qk_norm_rope_(other)
    assert torch.equal(_run(other)[1], expected[1])


def test_blocks_that_differ_from_what_it_follows_are_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bf16 = FluxTransformerBlock(DIM, HEADS, DIM // HEADS).to(torch.bfloat16)
    use_qk_norm_rope_(bf16)
    assert not eligible(bf16) and use_double_norm_quantize_(bf16) == 0
    unfused = fp8_block(FluxTransformerBlock, "transformer_blocks")
    use_qk_norm_rope_(unfused)
    assert not eligible(unfused)  # separate q, k, v projections
    block = _block()
    monkeypatch.setattr(double_block_norm, "FOLLOWED_BLOCK", "0000")
    assert not eligible(block) and use_double_norm_quantize_(block) == 0
