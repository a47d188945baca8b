"""bf16 blocks without their two widest elementwise passes: GELU in the GEMM, no concat.

Under `compile` (bf16), Inductor spent 12.5 ms of the 4 steps at 1024x1024 on an H200 writing
each single block's concat(attention output, GELU(MLP)), 15,360 wide, and 4.1 ms on the double
blocks' feed-forward GELU (bench/results/2026-12-02-nvidia-h200-15-kernels-unfused.json). Both
go away here:

- `fluxbot::linear_gelu_tanh`: a linear followed by GELU (tanh), on CUDA one cuBLASLt call with
  the GELU in its epilogue (`torch._addmm_activation`, whose CUDA GELU is the tanh form).
- `fluxbot::concat_linear`: `proj_out(concat(a, m))` as `a @ Wa.T + b` then `+= m @ Wm.T`, two
  GEMMs over the halves of `proj_out`'s weight, the second accumulating into the first's output:
  the concatenated activation is never written.

Both are custom ops, so Inductor neither decomposes nor reorders them; their math elsewhere
(the CPU) is the same in plain torch ops. A block whose linears are not plain `nn.Linear`
(fp8 under `fast`, a style's LoRA) keeps its own forward.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fluxbot.engine.single_block import (
    FOLLOWED_FORWARD,
    forward_fingerprint,
    rows,
    run_single_block,
)

log = logging.getLogger(__name__)


@torch.library.custom_op("fluxbot::linear_gelu_tanh", mutates_args=())
def linear_gelu_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GELU_tanh(x @ weight.T + bias) for a 2-D `x`."""
    if x.device.type == "cuda":
        # cuBLASLt's GELU epilogue (torch falls back to addmm + gelu(tanh) where Lt can't run).
        return torch._addmm_activation(bias, x, weight.t(), use_gelu=True)
    return F.gelu(F.linear(x, weight, bias), approximate="tanh")


@linear_gelu_tanh.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("fluxbot::concat_linear", mutates_args=())
def concat_linear(
    a: torch.Tensor, m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """concat(a, m, dim=-1) @ weight.T + bias for 2-D `a` and `m`, without the concat."""
    width = a.shape[1]
    out = torch.addmm(bias, a, weight[:, :width].t())
    return out.addmm_(m, weight[:, width:].t())


@concat_linear.register_fake
def _(a: torch.Tensor, m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], weight.shape[0])


def _plain(linear: Any) -> bool:
    return type(linear) is nn.Linear and linear.bias is not None


def _single_forward(
    self: Any,  # a diffusers FluxSingleTransformerBlock
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    joint_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' FluxSingleTransformerBlock.forward (0.42) with the MLP's GELU in its GEMM and
    `proj_out` over the two halves (diffusers' own while a linear is not plain, e.g. a LoRA)."""
    inputs = (hidden_states, encoder_hidden_states, temb, image_rotary_emb, joint_attention_kwargs)
    if not (_plain(self.proj_mlp) and _plain(self.proj_out)):
        return type(self).forward(self, *inputs)

    def mlp(x: torch.Tensor) -> torch.Tensor:
        return linear_gelu_tanh(rows(x), self.proj_mlp.weight, self.proj_mlp.bias)

    def project(attn: torch.Tensor, activated: torch.Tensor) -> torch.Tensor:
        out = concat_linear(rows(attn), activated, self.proj_out.weight, self.proj_out.bias)
        return out.view(*attn.shape[:-1], out.shape[-1])

    return run_single_block(self, *inputs, mlp=mlp, project=project)


def _gelu_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """diffusers' GELU activation module (its `proj`, then GELU) as one GEMM with epilogue."""
    if not _plain(self.proj):
        return type(self).forward(self, hidden_states)
    out = linear_gelu_tanh(rows(hidden_states), self.proj.weight, self.proj.bias)
    return out.view(*hidden_states.shape[:-1], out.shape[-1])


FOLLOWED_GELU = "87ac7265011e"
"""The start of `forward_fingerprint` of diffusers' GELU module forward (0.42) that
`_gelu_forward` follows."""


def _single_eligible(block: nn.Module) -> bool:
    act, proj_mlp = getattr(block, "act_mlp", None), getattr(block, "proj_mlp", None)
    proj_out = getattr(block, "proj_out", None)
    if not (_plain(proj_mlp) and _plain(proj_out)):
        return False
    assert isinstance(proj_mlp, nn.Linear) and isinstance(proj_out, nn.Linear)
    return (
        forward_fingerprint(type(block).forward).startswith(FOLLOWED_FORWARD)
        and isinstance(act, nn.GELU)
        and act.approximate == "tanh"
        and proj_out.in_features
        == getattr(getattr(block, "attn", None), "inner_dim", -1) + proj_mlp.out_features
    )


def _gelu_eligible(module: nn.Module) -> bool:
    return (
        forward_fingerprint(type(module).forward).startswith(FOLLOWED_GELU)
        and getattr(module, "approximate", None) == "tanh"
        and _plain(getattr(module, "proj", None))
    )


def use_gemm_epilogues_(transformer: nn.Module) -> int:
    """Give the eligible single blocks and GELU modules the forwards above; returns how many
    modules changed. Modules of another diffusers keep their own (logged once)."""
    changed = 0
    skipped: set[str] = set()
    for module in transformer.modules():
        kind = type(module).__name__
        if kind == "FluxSingleTransformerBlock":
            if _single_eligible(module):
                module.forward = types.MethodType(_single_forward, module)
                changed += 1
            else:
                skipped.add(kind)
        elif kind == "GELU" and type(module).__module__.startswith("diffusers."):
            if _gelu_eligible(module):
                module.forward = types.MethodType(_gelu_forward, module)
                changed += 1
            else:
                skipped.add(kind)
    if skipped:
        log.info(
            "speed: %s keep(s) diffusers' own forward (not the code fluxbot's GEMM epilogues "
            "follow, or not plain bf16 linears)",
            ", ".join(sorted(skipped)),
        )
    return changed


def drop_gemm_epilogues_(transformer: nn.Module) -> int:
    """Back to diffusers' own forwards (benchmarks compare both); returns how many."""
    restored = 0
    for module in transformer.modules():
        forward = vars(module).get("forward")
        if getattr(forward, "__func__", None) in (_single_forward, _gelu_forward):
            del module.forward
            restored += 1
    return restored
