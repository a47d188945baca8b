"""One pass for the FLUX single blocks' input: LayerNorm, modulation and the fp8 quantise.

Each single block normalises its hidden states (LayerNorm, no affine), modulates them per image
(`* (1 + scale) + shift`) and hands the result to two fp8 linears (the fused q/k/v projection
and the MLP's), which quantise it row by row. Under `fast` Inductor built that fp8 input in one
looped reduction that reads the row three times (mean and variance, amax, quantise): 7.9 ms of
the 4 steps at 1024x1024 on an H200, 52 us a call (bench/results/
2026-12-03-nvidia-h200-21-kernels-fast.json). `fluxbot::norm_modulate_quantize` does it in one
read of the text's and the image's hidden states where they are, never concatenating them
(fluxbot.engine.norm_quantize_kernel on CUDA; the same torch ops elsewhere), and
`use_norm_quantize_` gives each eligible single block a forward whose two linears take those
rows as they are, the attention going on through fluxbot.engine.qk_rope's processor.

On under `fast` (`SpeedPlan.norm_quantize`): on an H200 the 304 calls of 4 steps took 5.3 ms
where Inductor's looped reductions took ~17, 0.409 against 0.420 s an image (bench kernels,
`-22`; the `fast_nonormq` phase turns it off). A block keeps the forward it had
(fluxbot.engine.fp8_fused's) whenever one of its parts is not what this follows: a LoRA on a
linear, another processor, another diffusers.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fluxbot.engine import fp8_fused, norm_quantize_kernel
from fluxbot.engine.fp8 import FP8_DTYPE, Fp8Linear, is_dynamic_fp8, quantize_rowwise
from fluxbot.engine.qk_rope import processor_class
from fluxbot.engine.single_block import forward_fingerprint, run_single_block

FOLLOWED_NORM = "ff138e112a4f"
"""The start of `forward_fingerprint` of diffusers 0.42's AdaLayerNormZeroSingle.forward, whose
modulation `_front` follows."""


def norm_modulate_quantize_reference(
    txt: torch.Tensor, img: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the unfused block computes: quantize_rowwise(LayerNorm(x) * (1 + scale) + shift)
    for x = concat(txt, img) along positions ((batch, positions, width) each) and (batch, width)
    `shift` / `scale`."""
    x = torch.cat([txt, img], dim=1)
    y = F.layer_norm(x, (x.shape[-1],), eps=eps) * (1 + scale[:, None]) + shift[:, None]
    return quantize_rowwise(y.reshape(-1, y.shape[-1]))


def _kernel_serves(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cuda"
        and norm_quantize_kernel.available()
        and x.dtype in (torch.bfloat16, torch.float16)
    )


@torch.library.custom_op("fluxbot::norm_modulate_quantize", mutates_args=())
def norm_modulate_quantize(
    txt: torch.Tensor, img: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 rows of LayerNorm(x) * (1 + scale) + shift for x = concat(txt, img) along positions,
    (batch x positions, width), and their fp32 scales, (rows, 1); the concatenation is never
    made (the kernel reads each row where it is)."""
    if not _kernel_serves(img):
        return norm_modulate_quantize_reference(txt, img, shift, scale, eps)
    txt = txt if txt.stride(-1) == 1 else txt.contiguous()
    img = img if img.stride(-1) == 1 else img.contiguous()
    if shift.stride() != scale.stride() or shift.stride(-1) != 1:
        shift, scale = shift.contiguous(), scale.contiguous()
    rows = img.shape[0] * (txt.shape[1] + img.shape[1])
    q = torch.empty(rows, img.shape[-1], dtype=FP8_DTYPE, device=img.device)
    s = torch.empty(rows, 1, dtype=torch.float32, device=img.device)
    with torch.cuda.device(img.device):
        norm_quantize_kernel.launch(txt, img, shift, scale, eps, q, s)
    return q, s


@norm_modulate_quantize.register_fake
def _(
    txt: torch.Tensor, img: torch.Tensor, *shift_scale_eps: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = img.shape[0] * (txt.shape[1] + img.shape[1])
    return img.new_empty(rows, img.shape[-1], dtype=FP8_DTYPE), img.new_empty(rows, 1).float()


def layer_norm_without_affine(norm: Any) -> bool:
    return type(norm) is nn.LayerNorm and not norm.elementwise_affine


def _parts_in_place(block: Any) -> bool:
    """The parts `_front` uses are still what it follows (a LoRA installed later wraps a linear;
    the q/k processor can be dropped)."""
    attn = block.attn
    return (
        is_dynamic_fp8(block.proj_mlp)
        and getattr(attn, "fused_projections", False)
        and is_dynamic_fp8(getattr(attn, "to_qkv", None))
        and isinstance(attn.processor, processor_class())
    )


def eligible(block: nn.Module) -> bool:
    """A single block running fluxbot.engine.fp8_fused's forward whose norm is diffusers'
    AdaLayerNormZeroSingle (a LayerNorm without affine) and whose q/k/v and MLP projections are
    dynamic fp8 linears reading the normed rows, with the q/k processor."""
    if not fp8_fused.fusable(block):
        return False
    norm: Any = getattr(block, "norm", None)
    return (
        type(norm).__name__ == "AdaLayerNormZeroSingle"
        and forward_fingerprint(type(norm).forward).startswith(FOLLOWED_NORM)
        and layer_norm_without_affine(getattr(norm, "norm", None))
        and _parts_in_place(block)
    )


def _forward(
    self: Any,  # a diffusers FluxSingleTransformerBlock
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    joint_attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fluxbot.engine.fp8_fused's single-block forward with the norm, the modulation and the
    quantise of the q/k/v and MLP projections' input in one op (that forward whenever a part
    is not in place)."""
    inputs = (hidden_states, encoder_hidden_states, temb, image_rotary_emb, joint_attention_kwargs)
    if (
        joint_attention_kwargs
        or image_rotary_emb is None
        or type(self.proj_out) is not Fp8Linear
        or not _parts_in_place(self)
    ):
        return fp8_fused._fused_forward(self, *inputs)

    def front(
        txt: torch.Tensor,
        img: torch.Tensor,
        emb: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm, attn = self.norm, self.attn
        shift, scale, gate = norm.linear(norm.silu(emb)).chunk(3, dim=1)
        xq, x_scale = norm_modulate_quantize(txt, img, shift, scale, norm.norm.eps)
        leading, dtype = (img.shape[0], txt.shape[1] + img.shape[1]), img.dtype
        mlp_pre = self.proj_mlp.matmul_quantized(xq, x_scale, leading, dtype)
        qkv = attn.to_qkv.matmul_quantized(xq, x_scale, leading, dtype)
        query, key, value = qkv.chunk(3, dim=-1)
        return attn.processor.attend(attn, query, key, value, rope), mlp_pre, gate

    return run_single_block(
        self, *inputs, mlp=self.proj_mlp, project=fp8_fused.project_quantized(self), front=front
    )


def use_norm_quantize_(transformer: nn.Module) -> int:
    """Give every eligible single block the one-op front; returns how many."""
    changed: list[Any] = []
    for block in transformer.modules():
        if type(block).__name__ == "FluxSingleTransformerBlock" and eligible(block):
            block.forward = types.MethodType(_forward, block)
            changed.append(block)
    if changed:
        warm_norm_quantize(changed[0].proj_mlp, changed[0].norm.norm.eps)
    return len(changed)


def drop_norm_quantize_(transformer: nn.Module) -> int:
    """Back to fluxbot.engine.fp8_fused's forward (benchmarks compare both); returns how many."""
    restored = 0
    for block in transformer.modules():
        forward = vars(block).get("forward")
        if getattr(forward, "__func__", None) is _forward:
            block.forward = types.MethodType(fp8_fused._fused_forward, block)
            restored += 1
    return restored


TUNE_TEXT, TUNE_IMAGE = 256, 4096
"""Rows the kernel is tuned on at load: the text's and a 1024x1024 image's."""


def warm_norm_quantize(projection: Fp8Linear, eps: float) -> None:
    """Compile and autotune the CUDA kernel for the rows `projection` reads, now, on the loading
    thread (see fluxbot.engine.fp8_fused.warm_gelu_quantize)."""
    device, width, dtype = (
        projection.qweight.device,
        projection.in_features,
        projection.compute_dtype,
    )
    if not _kernel_serves(torch.zeros(1, 1, width, dtype=dtype, device=device)):
        return
    with torch.inference_mode():
        txt = torch.zeros(1, TUNE_TEXT, width, dtype=dtype, device=device)
        img = torch.zeros(1, TUNE_IMAGE, width, dtype=dtype, device=device)
        mod = torch.zeros(1, width, dtype=dtype, device=device)
        norm_modulate_quantize(txt, img, mod, mod, eps)
    torch.cuda.synchronize(device)
