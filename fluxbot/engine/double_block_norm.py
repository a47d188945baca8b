"""The FLUX double blocks' attention input through `fluxbot::norm_modulate_quantize`.

Each double block normalises and modulates its image and its text hidden states (`norm1`,
`norm1_context`) for the fused q/k/v projections of each, which quantise them row by row. Under
`fast` Inductor built those fp8 inputs in looped reductions that read each row three times
(the image's: 4.7 ms of the 4 steps at 1024x1024 on an H200, 62 us a call; bench/results/
2026-12-03-nvidia-h200-21-kernels-fast.json). `use_double_norm_quantize_` gives each eligible
double block diffusers' forward (0.42) with that step done by fluxbot.engine.norm_quantize's
one-pass op and the projections reading its rows as they are; the rest of the block (the
residuals, `norm2` and the feed-forwards) is diffusers' own lines.

Part of `SpeedPlan.norm_quantize` (on under `fast`). A block falls back to diffusers'
forward whenever a part is not what this follows.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from fluxbot.engine.fp8 import is_dynamic_fp8
from fluxbot.engine.fp8_fused import drop_forward_
from fluxbot.engine.norm_quantize import (
    layer_norm_without_affine,
    norm_modulate_quantize,
    warm_norm_quantize,
)
from fluxbot.engine.qk_rope import processor_class
from fluxbot.engine.single_block import forward_fingerprint

FOLLOWED_BLOCK = "e988c2bc5431"
FOLLOWED_NORM = "690b44401a6e"
"""The starts of `forward_fingerprint` of diffusers 0.42's FluxTransformerBlock.forward and
AdaLayerNormZero.forward, which `_forward` follows."""


def _parts_in_place(block: Any) -> bool:
    attn = block.attn
    return (
        getattr(attn, "fused_projections", False)
        and is_dynamic_fp8(getattr(attn, "to_qkv", None))
        and is_dynamic_fp8(getattr(attn, "to_added_qkv", None))
        and isinstance(attn.processor, processor_class())
    )


def _follows(norm: Any) -> bool:
    return (
        type(norm).__name__ == "AdaLayerNormZero"
        and forward_fingerprint(type(norm).forward).startswith(FOLLOWED_NORM)
        and getattr(norm, "emb", None) is None
        and layer_norm_without_affine(getattr(norm, "norm", None))
    )


def eligible(block: nn.Module) -> bool:
    """A diffusers FluxTransformerBlock running the forward `_forward` follows, whose norm1s are
    AdaLayerNormZero (a LayerNorm without affine) feeding fused dynamic fp8 q/k/v projections,
    with the q/k processor."""
    return (
        type(block).__name__ == "FluxTransformerBlock"
        and forward_fingerprint(type(block).forward).startswith(FOLLOWED_BLOCK)
        and _follows(getattr(block, "norm1", None))
        and _follows(getattr(block, "norm1_context", None))
        and _parts_in_place(block)
    )


def _norm1(norm: Any, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """AdaLayerNormZero's modulation with its normed output as fp8 rows and their scales."""
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = norm.linear(
        norm.silu(temb)
    ).chunk(6, dim=1)
    xq, x_scale = norm_modulate_quantize(x[:, :0], x, shift_msa, scale_msa, norm.norm.eps)
    return xq, x_scale, gate_msa, shift_mlp, scale_mlp, gate_mlp


def _forward(
    self: Any,  # a diffusers FluxTransformerBlock
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    joint_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' FluxTransformerBlock.forward (0.42) with norm1/norm1_context's output made as
    the q/k/v projections' fp8 rows in one op (diffusers' own whenever a part is not in place)."""
    if joint_attention_kwargs or image_rotary_emb is None or not _parts_in_place(self):
        return type(self).forward(
            self,
            hidden_states,
            encoder_hidden_states,
            temb,
            image_rotary_emb,
            joint_attention_kwargs,
        )
    attn, dtype = self.attn, hidden_states.dtype
    xq, x_scale, gate_msa, shift_mlp, scale_mlp, gate_mlp = _norm1(self.norm1, hidden_states, temb)
    cq, c_scale, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = _norm1(
        self.norm1_context, encoder_hidden_states, temb
    )
    qkv = attn.to_qkv.matmul_quantized(xq, x_scale, hidden_states.shape[:-1], dtype)
    added = attn.to_added_qkv.matmul_quantized(cq, c_scale, encoder_hidden_states.shape[:-1], dtype)
    query, key, value = qkv.chunk(3, dim=-1)
    attn_output, context_attn_output = attn.processor.attend(
        attn, query, key, value, image_rotary_emb, list(added.chunk(3, dim=-1))
    )

    # From here on diffusers' lines.
    attn_output = gate_msa.unsqueeze(1) * attn_output
    hidden_states = hidden_states + attn_output
    norm_hidden_states = self.norm2(hidden_states)
    norm_hidden_states = norm_hidden_states * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    ff_output = self.ff(norm_hidden_states)
    ff_output = gate_mlp.unsqueeze(1) * ff_output
    hidden_states = hidden_states + ff_output

    context_attn_output = c_gate_msa.unsqueeze(1) * context_attn_output
    encoder_hidden_states = encoder_hidden_states + context_attn_output
    norm_encoder_hidden_states = self.norm2_context(encoder_hidden_states)
    norm_encoder_hidden_states = (
        norm_encoder_hidden_states * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
    )
    context_ff_output = self.ff_context(norm_encoder_hidden_states)
    encoder_hidden_states = encoder_hidden_states + c_gate_mlp.unsqueeze(1) * context_ff_output
    if encoder_hidden_states.dtype == torch.float16:
        encoder_hidden_states = encoder_hidden_states.clip(-65504, 65504)
    return encoder_hidden_states, hidden_states


def use_double_norm_quantize_(transformer: nn.Module) -> int:
    """Give every eligible double block the one-op norm1s; returns how many."""
    changed: list[Any] = []
    for block in transformer.modules():
        if eligible(block):
            block.forward = types.MethodType(_forward, block)
            changed.append(block)
    if changed:
        warm_norm_quantize(changed[0].attn.to_qkv, changed[0].norm1.norm.eps)
    return len(changed)


def drop_double_norm_quantize_(transformer: nn.Module) -> int:
    """Back to diffusers' forward (benchmarks compare both); returns how many."""
    return drop_forward_(transformer, _forward)
