"""diffusers' FLUX single-block forward with its MLP and output projection left to the caller.

fluxbot.engine.fp8_fused (`fast`) and fluxbot.engine.bf16_epilogues (`compile`) each replace two
parts of `FluxSingleTransformerBlock.forward` (diffusers 0.42): how the MLP's activation is made
and how `proj_out` reads concat(attention output, GELU(MLP)); fluxbot.engine.norm_quantize also
replaces the norm, the attention and the MLP projection in one `front`. The rest is this one
copy, used only where the block runs the code it follows (`follows_diffusers`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

FOLLOWED_FORWARD = "bdc8d269208a"
"""The start of `forward_fingerprint` of the diffusers forward `run_single_block` follows
(FluxSingleTransformerBlock, diffusers 0.42): another one is never replaced."""


@functools.cache
def forward_fingerprint(forward: Callable[..., Any]) -> str:
    """A hash of a function's source with comments, indentation and blank lines left out (the
    same on every Python version, unlike its syntax tree's dump)."""
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        return "unknown"
    lines = (line.split("#", 1)[0].strip() for line in source.splitlines())
    return hashlib.sha256("\n".join(line for line in lines if line).encode()).hexdigest()


def follows_diffusers(block: nn.Module, followed: str = FOLLOWED_FORWARD) -> bool:
    return forward_fingerprint(type(block).forward).startswith(followed)


Front = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, "tuple[torch.Tensor, torch.Tensor] | None"],
    "tuple[torch.Tensor, torch.Tensor, torch.Tensor]",
]
"""(text hidden states, image hidden states, temb, RoPE) -> (attention output over both, MLP
pre-activation, gate): the block's norm, attention and MLP projection, in one."""


def run_single_block(
    block: Any,  # a diffusers FluxSingleTransformerBlock
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
    joint_attention_kwargs: dict[str, Any] | None,
    *,
    mlp: Callable[[torch.Tensor], torch.Tensor],
    project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    front: Front | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's forward: `mlp(norm_hidden_states)`, then `project(attn_output, that)` in
    place of `proj_out(concat(attn_output, GELU(mlp)))`; (text, image) hidden states. `front`,
    if given, makes the attention output, the MLP's input and the gate in place of the norm,
    `mlp` and the attention."""
    text_seq_len = encoder_hidden_states.shape[1]
    image = hidden_states
    hidden_states = torch.cat([encoder_hidden_states, image], dim=1)
    residual = hidden_states
    if front is not None:
        # The text and image as they are: the concatenation is left to be fused into the
        # residual's sum below.
        attn_output, mlp_out, gate = front(encoder_hidden_states, image, temb, image_rotary_emb)
    else:
        norm_hidden_states, gate = block.norm(hidden_states, emb=temb)
        mlp_out = mlp(norm_hidden_states)
        attn_output = block.attn(
            hidden_states=norm_hidden_states,
            image_rotary_emb=image_rotary_emb,
            **(joint_attention_kwargs or {}),
        )
    hidden_states = residual + gate.unsqueeze(1) * project(attn_output, mlp_out)
    if hidden_states.dtype == torch.float16:
        hidden_states = hidden_states.clip(-65504, 65504)
    return hidden_states[:, :text_seq_len], hidden_states[:, text_seq_len:]


def rows(x: torch.Tensor) -> torch.Tensor:
    """A tensor as a 2-D matrix of its last dimension's rows."""
    return x.reshape(-1, x.shape[-1])
