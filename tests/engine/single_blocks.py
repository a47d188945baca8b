"""Shared by the tests of the block forwards (fp8_fused, fp8_ff, bf16_epilogues, qk_rope): inputs
for a small FLUX block, such a block with fp8 linears, and the check that a block compiles whole
with the same numbers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fluxbot.engine.fp8 import flux_transformer_chooser, quantize_linears_

DIM, HEADS = 64, 2


def single_block_inputs(
    dtype: torch.dtype, seed: int = 1, tokens: int = 24, text: int = 8
) -> dict[str, object]:
    g = torch.Generator().manual_seed(seed)
    angles = torch.randn(tokens + text, DIM // HEADS // 2, generator=g)
    return {
        "hidden_states": torch.randn(2, tokens, DIM, generator=g).to(dtype),
        "encoder_hidden_states": torch.randn(2, text, DIM, generator=g).to(dtype),
        "temb": torch.randn(2, DIM, generator=g).to(dtype),
        "image_rotary_emb": (
            angles.cos().repeat_interleave(2, -1),
            angles.sin().repeat_interleave(2, -1),
        ),
    }


def assert_compiles_whole_with_the_same_numbers(
    block: torch.nn.Module, inputs: dict[str, object]
) -> None:
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    with torch.inference_mode():
        expected = block(**inputs)
        got = compiled(**inputs)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def fp8_block(
    cls: type[nn.Module], group: str, seed: int = 0, *, fused_qkv: bool = False
) -> nn.Module:
    """A small bf16 FLUX block of `cls` with fp8 linears, as `fast` converts them when the block
    sits in the transformer's `group` ("transformer_blocks", "single_transformer_blocks"),
    with its q/k/v projections fused first if asked (as every profile does)."""
    torch.manual_seed(seed)
    block: Any = cls(DIM, HEADS, DIM // HEADS).to(torch.bfloat16).eval()
    if fused_qkv:
        block.attn.fuse_projections()
    holder = nn.ModuleDict({group: nn.ModuleList([block])})
    quantize_linears_(holder, flux_transformer_chooser(dynamic=True, modulation=False))
    return block
