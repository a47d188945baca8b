"""Attention inputs in one pass: q/k RMSNorm, the text/image concat and RoPE in one kernel.

Every FLUX attention normalises its queries and keys per head (RMSNorm), puts the text's before
the image's (double blocks) and rotates them by position (RoPE). Under `compile` Inductor made
that 25 ms of the 4 steps at 1024x1024 on an H200: 17 ms in one looped reduction per single
block, ~4x what reading and writing q and k once costs, and four kernels per double block
(bench/results/2026-12-02-nvidia-h200-17-kernels.json). `fluxbot::qk_norm_rope` does it in one
read and one write of each (fluxbot.engine.qk_rope_kernel on CUDA; elsewhere the same torch ops
diffusers runs), and `use_qk_norm_rope_` gives each eligible attention a processor that calls
it, under every compiled profile and the eager path that serves while they build.

The processor is diffusers' FluxAttnProcessor (0.42) with that one step replaced; an attention
whose processor, norms or call differ (an attention mask, another diffusers) runs diffusers' own.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from fluxbot.engine import qk_rope_kernel
from fluxbot.engine.single_block import forward_fingerprint

log = logging.getLogger(__name__)

FOLLOWED_PROCESSOR = "eee98f764420"
"""The start of `forward_fingerprint` of FluxAttnProcessor.__call__ (diffusers 0.42) that
`QKNormRopeProcessor.__call__` follows; another one is never replaced."""


def qk_norm_rope_reference(
    txt: torch.Tensor,
    img: torch.Tensor,
    w_txt: torch.Tensor,
    w_img: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """What diffusers computes: RMSNorm of each segment, text before image, then RoPE."""
    from diffusers.models.embeddings import apply_rotary_emb

    normed = nn.functional.rms_norm(img, (img.shape[-1],), w_img, eps)
    if txt.shape[1]:
        normed_txt = nn.functional.rms_norm(txt, (txt.shape[-1],), w_txt, eps)
        normed = torch.cat([normed_txt, normed], dim=1)
    rotated: torch.Tensor = apply_rotary_emb(normed, (cos, sin), sequence_dim=1)  # type: ignore[arg-type, assignment]
    return rotated


def _kernel_serves(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor) -> bool:
    width = x.shape[-1]
    return (
        x.device.type == "cuda"
        and qk_rope_kernel.available()
        and x.dtype in (torch.bfloat16, torch.float16)
        and weight.dtype == x.dtype
        and width >= 16
        and width & (width - 1) == 0
        and cos.dtype == torch.float32
    )


@torch.library.custom_op("fluxbot::qk_norm_rope", mutates_args=())
def qk_norm_rope(
    txt: torch.Tensor,
    img: torch.Tensor,
    w_txt: torch.Tensor,
    w_img: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """RoPE(concat(RMSNorm(txt, w_txt), RMSNorm(img, w_img))) along positions, for (batch,
    positions, heads, head_dim) inputs (`txt` may have no positions); (positions, head_dim)
    `cos`/`sin`. The result is contiguous."""
    if not _kernel_serves(img, w_img, cos):
        return qk_norm_rope_reference(txt, img, w_txt, w_img, cos, sin, eps).contiguous()
    img = img if img.stride(-1) == 1 else img.contiguous()
    text = txt.shape[1]
    if not text:
        txt = img  # nothing is read from it
    elif txt.stride(-1) != 1:
        txt = txt.contiguous()
    batch, positions, heads, width = img.shape
    out = img.new_empty(batch, text + positions, heads, width)
    with torch.cuda.device(img.device):
        qk_rope_kernel.launch(
            txt,
            img,
            w_txt.contiguous(),
            w_img.contiguous(),
            cos.contiguous(),
            sin.contiguous(),
            eps,
            out,
        )
    return out


@qk_norm_rope.register_fake
def _(txt: torch.Tensor, img: torch.Tensor, *weights_rope_eps: Any) -> torch.Tensor:
    batch, positions, heads, width = img.shape
    return img.new_empty(batch, txt.shape[1] + positions, heads, width)


def _plain_norm(norm: Any) -> bool:
    return type(norm) is nn.RMSNorm and norm.weight is not None and norm.eps is not None


def _eligible(attn: nn.Module) -> bool:
    processor = getattr(attn, "processor", None)
    if type(processor).__name__ != "FluxAttnProcessor":
        return False
    if not forward_fingerprint(type(processor).__call__).startswith(FOLLOWED_PROCESSOR):
        return False
    norms = ["norm_q", "norm_k"]
    if getattr(attn, "added_kv_proj_dim", None) is not None:
        norms += ["norm_added_q", "norm_added_k"]
    return all(_plain_norm(getattr(attn, name, None)) for name in norms)


def _processor_class() -> type:
    from diffusers.models.attention_dispatch import dispatch_attention_fn
    from diffusers.models.transformers.transformer_flux import (
        FluxAttnProcessor,
        _get_qkv_projections,
    )

    class QKNormRopeProcessor(FluxAttnProcessor):
        """FluxAttnProcessor (diffusers 0.42) with q/k's norm, concat and RoPE in one op."""

        def __call__(
            self,
            attn: Any,
            hidden_states: torch.Tensor,
            encoder_hidden_states: Any = None,
            attention_mask: Any = None,
            image_rotary_emb: Any = None,  # (cos, sin)
        ) -> Any:
            joint = attn.added_kv_proj_dim is not None
            if (
                attention_mask is not None
                or image_rotary_emb is None
                or (joint and encoder_hidden_states is None)
            ):
                return super().__call__(
                    attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb
                )
            query, key, value, *encoder = _get_qkv_projections(
                attn, hidden_states, encoder_hidden_states
            )
            return self.attend(
                attn, query, key, value, image_rotary_emb, encoder if joint else None
            )

        def attend(
            self,
            attn: Any,
            query: torch.Tensor,
            key: torch.Tensor,
            value: torch.Tensor,
            image_rotary_emb: tuple[torch.Tensor, torch.Tensor],
            encoder: list[torch.Tensor] | None = None,
        ) -> Any:
            """The attention from its projections on: (batch, positions, inner) queries, keys
            and values, and for a joint attention the text's three (`encoder`)."""
            query = query.unflatten(-1, (-1, attn.head_dim))
            key = key.unflatten(-1, (-1, attn.head_dim))
            value = value.unflatten(-1, (-1, attn.head_dim))
            if encoder is not None:
                encoder_query = encoder[0].unflatten(-1, (-1, attn.head_dim))
                encoder_key = encoder[1].unflatten(-1, (-1, attn.head_dim))
                encoder_value = encoder[2].unflatten(-1, (-1, attn.head_dim))
                value = torch.cat([encoder_value, value], dim=1)
                q_norms = (attn.norm_added_q.weight, attn.norm_q.weight)
                k_norms = (attn.norm_added_k.weight, attn.norm_k.weight)
            else:
                encoder_query = encoder_key = query[:, :0]
                q_norms = (attn.norm_q.weight, attn.norm_q.weight)
                k_norms = (attn.norm_k.weight, attn.norm_k.weight)
            cos, sin = image_rotary_emb
            query = qk_norm_rope(encoder_query, query, *q_norms, cos, sin, attn.norm_q.eps)
            key = qk_norm_rope(encoder_key, key, *k_norms, cos, sin, attn.norm_k.eps)
            hidden_states = dispatch_attention_fn(
                query,
                key,
                value,
                attn_mask=None,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )
            hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
            if encoder is None:
                return hidden_states
            text = encoder_query.shape[1]
            encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
                [text, hidden_states.shape[1] - text], dim=1
            )
            hidden_states = attn.to_out[0](hidden_states.contiguous())
            hidden_states = attn.to_out[1](hidden_states)
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states.contiguous())
            return hidden_states, encoder_hidden_states

    return QKNormRopeProcessor


_PROCESSOR: type | None = None


def processor_class() -> type:
    global _PROCESSOR
    if _PROCESSOR is None:
        _PROCESSOR = _processor_class()
    return _PROCESSOR


def use_qk_norm_rope_(transformer: nn.Module) -> int:
    """Give each eligible FluxAttention the one-op processor; returns how many changed.
    Attentions of another diffusers (or with other norms) keep theirs (logged once)."""
    cls = processor_class()
    changed = skipped = 0
    first: nn.Module | None = None
    for module in transformer.modules():
        if type(module).__name__ != "FluxAttention":
            continue
        if not isinstance(module.processor, cls):
            if not _eligible(module):
                skipped += 1
                continue
            new = cls()
            new.__dict__.update(vars(module.processor))  # its backend and parallel config
            module.processor = new
        changed += 1
        first = module if first is None else first
    if first is not None:
        _warm_kernel(first)
    if skipped:
        log.info(
            "speed: %d attention(s) keep diffusers' q/k norm and RoPE (not the processor "
            "fluxbot.engine.qk_rope follows)",
            skipped,
        )
    return changed


TUNE_TEXT, TUNE_IMAGE = 256, 4096
"""Positions the kernel is tuned on at load: a 1024x1024 image's and the text's."""


def _warm_kernel(attn: Any) -> None:
    """Compile and autotune the CUDA kernel now, on the loading thread: later its first call
    could fall in another thread's CUDA graph capture, which its timing syncs would break."""
    weight, width = attn.norm_q.weight, attn.head_dim
    cos = torch.ones(TUNE_TEXT + TUNE_IMAGE, width, device=weight.device)
    if not _kernel_serves(weight.new_empty(1, 1, 1, width), weight, cos):
        return
    heads = attn.inner_dim // width
    with torch.inference_mode():
        txt = weight.new_zeros(1, TUNE_TEXT, heads, width)
        img = weight.new_zeros(1, TUNE_IMAGE, heads, width)
        qk_norm_rope(txt, img, weight, weight, cos, torch.zeros_like(cos), attn.norm_q.eps)
    torch.cuda.synchronize(weight.device)


def drop_qk_norm_rope_(transformer: nn.Module) -> int:
    """Back to diffusers' FluxAttnProcessor (benchmarks compare both); returns how many."""
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    cls = processor_class()
    restored = 0
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if isinstance(processor, cls):
            plain = FluxAttnProcessor()
            plain.__dict__.update(vars(processor))
            module.processor = plain  # type: ignore[assignment]
            restored += 1
    return restored
