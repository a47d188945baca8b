"""One pass for the FLUX single blocks' widest activation: GELU, concat, row-wise fp8 quantise.

Each single block's `proj_out` reads concat(attention output, GELU(MLP)), 15,360 wide. Under
`fast`, Inductor built that fp8 input in two kernels that each read the whole activation: a
row-wise amax, then the quantise (16.1 + 20.9 ms of the 4 steps at 1024x1024 on an H200,
bench/results/2026-12-02-nvidia-h200-13-kernels.md). `fluxbot::gelu_cat_quantize` does it in one
read of the two inputs (fluxbot.engine.fp8_kernel on CUDA; the same math in torch ops elsewhere)
and `fuse_single_blocks_` makes each eligible single block call it.

A block whose `proj_out` carries a LoRA (a style's slot) keeps diffusers' own forward: the LoRA
needs the bf16 activation itself.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fluxbot.engine import fp8_kernel
from fluxbot.engine.fp8 import FP8_DTYPE, Fp8Linear, is_dynamic_fp8, quantize_rowwise
from fluxbot.engine.single_block import FOLLOWED_FORWARD, follows_diffusers, rows, run_single_block

log = logging.getLogger(__name__)


def gelu_cat_quantize_reference(
    attn: torch.Tensor, mlp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the unfused block computes: quantize_rowwise(concat(attn, GELU_tanh(mlp)))."""
    rows = torch.cat([attn, F.gelu(mlp, approximate="tanh")], dim=-1)
    return quantize_rowwise(rows)


@torch.library.custom_op("fluxbot::gelu_cat_quantize", mutates_args=())
def gelu_cat_quantize(attn: torch.Tensor, mlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 rows of concat(attn, GELU_tanh(mlp)) and their fp32 scales, for 2-D inputs (`attn`
    may have no columns: GELU and quantise alone)."""
    if attn.device.type != "cuda" or not fp8_kernel.available():
        return gelu_cat_quantize_reference(attn, mlp)
    attn = attn if attn.stride(-1) == 1 else attn.contiguous()
    mlp = mlp if mlp.stride(-1) == 1 else mlp.contiguous()
    rows = attn.shape[0]
    q = torch.empty(rows, attn.shape[1] + mlp.shape[1], dtype=FP8_DTYPE, device=attn.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=attn.device)
    with torch.cuda.device(attn.device):
        fp8_kernel.launch(attn, mlp, q, scale)
    return q, scale


@gelu_cat_quantize.register_fake
def _(attn: torch.Tensor, mlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = attn.shape[0]
    q = attn.new_empty(rows, attn.shape[1] + mlp.shape[1], dtype=FP8_DTYPE)
    return q, attn.new_empty(rows, 1, dtype=torch.float32)


def _fused_forward(
    self: Any,  # a diffusers FluxSingleTransformerBlock
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    joint_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' FluxSingleTransformerBlock.forward (0.42) with the GELU, the concat and
    `proj_out`'s input quantisation done by `fluxbot::gelu_cat_quantize` (diffusers' own while
    `proj_out` is not a plain fp8 linear, e.g. once a LoRA wraps it)."""
    inputs = (hidden_states, encoder_hidden_states, temb, image_rotary_emb, joint_attention_kwargs)
    if type(self.proj_out) is not Fp8Linear:
        return type(self).forward(self, *inputs)

    return run_single_block(self, *inputs, mlp=self.proj_mlp, project=project_quantized(self))


def project_quantized(block: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A single block's `proj_out(concat(attn, GELU(mlp_pre)))` through the one-pass op."""

    def project(attn: torch.Tensor, mlp_pre: torch.Tensor) -> torch.Tensor:
        xq, x_scale = gelu_cat_quantize(rows(attn), rows(mlp_pre))
        return block.proj_out.matmul_quantized(xq, x_scale, attn.shape[:-1], attn.dtype)

    return project


def _follows_diffusers(block: nn.Module) -> bool:
    return follows_diffusers(block, FOLLOWED_FORWARD)


def fusable(block: nn.Module) -> bool:
    """A FLUX single block whose proj_out is a dynamic fp8 linear of concat(attn, GELU(mlp)),
    running the diffusers forward that `_fused_forward` follows."""
    if type(block).__name__ != "FluxSingleTransformerBlock":
        return False
    if not _follows_diffusers(block):
        return False
    proj_out, act = getattr(block, "proj_out", None), getattr(block, "act_mlp", None)
    proj_mlp = getattr(block, "proj_mlp", None)
    return (
        is_dynamic_fp8(proj_out)
        and isinstance(act, nn.GELU)
        and act.approximate == "tanh"
        and proj_mlp is not None
        and proj_out.in_features
        == getattr(getattr(block, "attn", None), "inner_dim", -1) + proj_mlp.out_features
    )


TUNE_ROWS = 4096 + 256
"""Rows the kernel is tuned on at load: a 1024x1024 image's tokens and the text's."""


def fuse_single_blocks_(transformer: nn.Module) -> int:
    """Give every eligible single block the one-pass forward; returns how many."""
    fused: list[Any] = []
    other_code = False
    for block in transformer.modules():
        if fusable(block):
            block.forward = types.MethodType(_fused_forward, block)
            fused.append(block)
        elif type(block).__name__ == "FluxSingleTransformerBlock":
            other_code = not _follows_diffusers(block)
    if other_code:
        log.warning(
            "speed: this diffusers' single-block forward is not the one fluxbot's one-pass fp8 "
            "quantise follows; those blocks keep their own (slower, still correct)"
        )
    if fused:
        proj_out, mlp_width = fused[0].proj_out, fused[0].proj_mlp.out_features
        warm_gelu_quantize(proj_out, proj_out.in_features - mlp_width, mlp_width)
    return len(fused)


def warm_gelu_quantize(proj_out: Fp8Linear, attn_width: int, mlp_width: int) -> None:
    """Compile and autotune the CUDA kernel for these widths now, on the loading thread: later
    its first call could fall in another thread's CUDA graph capture, which its timing syncs
    would break."""
    weight = proj_out.qweight
    if weight.device.type != "cuda" or not fp8_kernel.available():
        return
    dtype = proj_out.compute_dtype
    with torch.inference_mode():
        mlp = torch.zeros(TUNE_ROWS, mlp_width, dtype=dtype, device=weight.device)
        attn = torch.zeros(TUNE_ROWS, attn_width, dtype=dtype, device=weight.device)
        gelu_cat_quantize(attn, mlp)
    torch.cuda.synchronize(weight.device)


def unfuse_single_blocks_(transformer: nn.Module) -> int:
    """Back to diffusers' own forward (benchmarks compare both); returns how many."""
    return drop_forward_(transformer, _fused_forward)


def drop_forward_(root: nn.Module, replacement: Any) -> int:
    """Remove every instance forward of `root`'s modules bound from `replacement`, so their
    class's runs again; returns how many."""
    restored = 0
    for module in root.modules():
        forward = vars(module).get("forward")
        if getattr(forward, "__func__", None) is replacement:
            del module.forward
            restored += 1
    return restored
