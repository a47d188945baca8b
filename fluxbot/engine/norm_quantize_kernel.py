"""The Triton kernel behind `fluxbot::norm_modulate_quantize` (fluxbot.engine.norm_quantize).

One program per row: the row is loaded once and kept in registers; LayerNorm (no affine) in
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
        x_ptr,
        shift_ptr,
        scale_ptr,
        q_ptr,
        s_ptr,
        x_stride,
        positions,
        mod_stride,
        eps,
        D: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        image = row // positions
        offs = tl.arange(0, BLOCK)
        inside = offs < D
        x_raw = tl.load(x_ptr + row * x_stride + offs, mask=inside, other=0.0)
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


def launch(x: Any, shift: Any, scale: Any, eps: float, q: Any, s: Any) -> None:
    """Fill `q` (batch x positions rows of D, fp8 e4m3) and `s` (rows x 1, fp32) from 3-D `x`
    (batch, positions, D), whose rows are contiguous, and (batch, D) `shift` / `scale` with a
    contiguous last dimension."""
    import triton

    batch, positions, width = x.shape

    def call() -> None:
        _compiled()[(batch * positions,)](
            x,
            shift,
            scale,
            q,
            s,
            x.stride(1),
            positions,
            shift.stride(0),
            eps,
            width,
            triton.next_power_of_2(width),
        )

    _TUNING.run((width, str(x.dtype)), call)
