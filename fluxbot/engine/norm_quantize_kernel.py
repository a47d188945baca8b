"""The Triton kernel behind `fluxbot::norm_modulate_quantize` (fluxbot.engine.norm_quantize).

One program per row of the concatenation (text, image) of a single block's hidden states, read
from the two where they are: the row is loaded once and kept in registers; LayerNorm (no affine) in
fp32, rounded to the input's dtype as torch's layer_norm returns it; the modulation
`* (1 + scale) + shift` of the row's image, each step rounded to the input's dtype as the eager
ops round it; then the row's amax gives its fp8 scale, and the fp8 row and the scale are
written. Kept apart, without postponed annotations, because Triton reads the `tl.constexpr`
annotations of the kernel's signature.
"""

import functools
import os
from typing import Any

from fluxbot.engine.autotune_guard import FirstCallGuard

try:
    import triton.language as tl
except ImportError:  # the CPU install: the op's reference path runs instead
    tl = None

if tl is not None:
    # Constants are literals in the kernel: Triton reads globals only as constexpr objects
    # (448: e4m3's largest finite value).

    def _norm_modulate_quantize_rows(
        txt_ptr,
        img_ptr,
        shift_ptr,
        scale_ptr,
        q_ptr,
        s_ptr,
        txt_sb,
        txt_ss,
        img_sb,
        img_ss,
        S,
        T,
        mod_stride,
        eps,
        D: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        image = row // S
        pos = row % S
        offs = tl.arange(0, BLOCK)
        inside = offs < D
        # Rows before T come from the text's hidden states, the rest from the image's.
        is_txt = (pos + tl.zeros([BLOCK], dtype=tl.int64)) < T
        from_txt = tl.load(
            txt_ptr + image * txt_sb + pos * txt_ss + offs, mask=inside & is_txt, other=0.0
        )
        from_img = tl.load(
            img_ptr + image * img_sb + (pos - T) * img_ss + offs,
            mask=inside & ~is_txt,
            other=0.0,
        )
        x_raw = tl.where(is_txt, from_txt, from_img)
        x = x_raw.to(tl.float32)
        mean = tl.sum(x, axis=0) / D
        centred = tl.where(inside, x - mean, 0.0)
        rstd = tl.math.rsqrt(tl.sum(centred * centred, axis=0) / D + eps)
        normed = (centred * rstd).to(x_raw.dtype).to(tl.float32)
        scale = tl.load(scale_ptr + image * mod_stride + offs, mask=inside, other=0.0)
        shift = tl.load(shift_ptr + image * mod_stride + offs, mask=inside, other=0.0)
        one_plus = (1.0 + scale.to(tl.float32)).to(x_raw.dtype).to(tl.float32)
        y = (normed * one_plus).to(x_raw.dtype).to(tl.float32)
        y = (y + shift.to(tl.float32)).to(x_raw.dtype).to(tl.float32)
        y = tl.where(inside, y, 0.0)
        row_scale = tl.maximum(tl.max(tl.abs(y), axis=0), 1e-12) / 448.0
        tl.store(s_ptr + row, row_scale)
        q = tl.clamp(y / row_scale, -448.0, 448.0).to(tl.float8e4nv)
        tl.store(q_ptr + row * D + offs, q, mask=inside)


def available() -> bool:
    return tl is not None


WARPS = (4, 8, 16)
_TUNING = FirstCallGuard()


@functools.cache
def _compiled() -> Any:
    import triton

    kernel = triton.jit(_norm_modulate_quantize_rows)
    if os.environ.get("TRITON_INTERPRET") == "1":
        # Triton's interpreter (chosen before Triton is imported: the CPU tests do so in a
        # subprocess) runs the same kernel on CPU tensors; it has nothing to autotune.
        return kernel
    configs = [triton.Config({}, num_warps=w) for w in WARPS]
    return triton.autotune(configs=configs, key=["D"])(kernel)


def launch(txt: Any, img: Any, shift: Any, scale: Any, eps: float, q: Any, s: Any) -> None:
    """Fill `q` (batch x (T + positions) rows of D, fp8 e4m3; the text's rows first) and `s`
    (rows x 1, fp32) from 3-D `txt` (batch, T, D; T may be 0) and `img` (batch, positions, D),
    whose last dimension is contiguous, and (batch, D) `shift` / `scale` with a contiguous last
    dimension and the same strides."""
    import triton

    batch, text, width = txt.shape
    positions = text + img.shape[1]
    source = txt if text else img  # with no text rows nothing is read from it

    def call() -> None:
        _compiled()[(batch * positions,)](
            source,
            img,
            shift,
            scale,
            q,
            s,
            source.stride(0),
            source.stride(1),
            img.stride(0),
            img.stride(1),
            positions,
            text,
            shift.stride(0),
            eps,
            width,
            triton.next_power_of_2(width),
        )

    _TUNING.run((width, str(img.dtype)), call)
