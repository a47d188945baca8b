"""The Triton kernel behind `fluxbot::qk_norm_rope` (fluxbot.engine.qk_rope).

A program takes a block of (batch, position, head) rows of one attention input (queries or
keys), each `D` wide: it loads the rows once, from the text or the image projection by position
(`pos < T` reads the text's), RMS-normalises each in fp32 with its segment's weight, rounding
to the input's dtype where torch's rms_norm does (once, after the weight), rotates each
(even, odd) pair by the position's cos/sin in fp32, and writes the row of the contiguous
(batch, position, head, D) output. Kept apart, without postponed annotations, because Triton
reads the `tl.constexpr` annotations of the kernel's signature.
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

    def _qk_norm_rope_rows(
        txt_ptr,
        img_ptr,
        w_txt_ptr,
        w_img_ptr,
        cos_ptr,
        sin_ptr,
        out_ptr,
        rows,
        S,
        T,
        txt_sb,
        txt_ss,
        txt_sh,
        img_sb,
        img_ss,
        img_sh,
        eps,
        H: tl.constexpr,
        D: tl.constexpr,
        BLOCK_R: tl.constexpr,
    ):
        r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        valid = r < rows
        h = r % H
        pos = (r // H) % S
        b = r // (H * S)
        d = tl.arange(0, D)
        is_txt = pos < T
        txt_rows = b * txt_sb + pos * txt_ss + h * txt_sh
        img_rows = b * img_sb + (pos - T) * img_ss + h * img_sh
        from_txt = tl.load(
            txt_ptr + txt_rows[:, None] + d[None, :], mask=(valid & is_txt)[:, None], other=0.0
        )
        from_img = tl.load(
            img_ptr + img_rows[:, None] + d[None, :], mask=(valid & ~is_txt)[:, None], other=0.0
        )
        x_raw = tl.where(is_txt[:, None], from_txt, from_img)
        x = x_raw.to(tl.float32)
        rstd = tl.math.rsqrt(tl.sum(x * x, axis=1) / D + eps)
        w = tl.where(
            is_txt[:, None],
            tl.load(w_txt_ptr + d)[None, :],
            tl.load(w_img_ptr + d)[None, :],
        ).to(tl.float32)
        # torch's rms_norm: x * rstd * weight in fp32, rounded once to the input's dtype.
        normed = (x * rstd[:, None] * w).to(x_raw.dtype).to(tl.float32)
        # diffusers' apply_rotary_emb: x * cos + (-x_odd, x_even) * sin, in fp32.
        pairs = tl.reshape(normed, (BLOCK_R, D // 2, 2))
        even, odd = tl.split(pairs)
        angle = pos[:, None] * D + d[None, :]
        cos_even, cos_odd = tl.split(tl.reshape(tl.load(cos_ptr + angle), (BLOCK_R, D // 2, 2)))
        sin_even, sin_odd = tl.split(tl.reshape(tl.load(sin_ptr + angle), (BLOCK_R, D // 2, 2)))
        out_even = even * cos_even - odd * sin_even
        out_odd = odd * cos_odd + even * sin_odd
        out = tl.reshape(tl.interleave(out_even, out_odd), (BLOCK_R, D))
        tl.store(
            out_ptr + r[:, None] * D + d[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=valid[:, None],
        )


def available() -> bool:
    return tl is not None


CONFIGS = ((8, 4), (16, 4), (16, 8), (32, 8))
"""(rows per program, warps): tried once per head width at the first call (the output is
rewritten whole each time, so the trials leave nothing behind)."""


@functools.cache
def _compiled() -> Any:
    import triton

    kernel = triton.jit(_qk_norm_rope_rows)
    if os.environ.get("TRITON_INTERPRET") == "1":
        # Triton's interpreter (chosen before Triton is imported: the CPU tests do so in a
        # subprocess) runs the same kernel on CPU tensors; it has nothing to autotune.
        return kernel
    configs = [triton.Config({"BLOCK_R": r}, num_warps=w) for r, w in CONFIGS]
    return triton.autotune(configs=configs, key=["H", "D"])(kernel)


_TUNING = FirstCallGuard()


def launch(
    txt: Any, img: Any, w_txt: Any, w_img: Any, cos: Any, sin: Any, eps: float, out: Any
) -> None:
    """Fill `out` (batch, T + S_img, heads, D; contiguous) from the 4-D (batch, positions, heads,
    D) `txt` (T positions; may have none) and `img`, whose last dimension is contiguous;
    `cos`/`sin` are contiguous fp32 (T + S_img, D)."""
    batch, seq, heads, width = out.shape
    rows = batch * seq * heads
    grid: Any = (rows,)
    kwargs: dict[str, Any] = {}
    if os.environ.get("TRITON_INTERPRET") == "1":
        kwargs["BLOCK_R"] = CONFIGS[0][0]
        grid = (-(-rows // CONFIGS[0][0]),)
    else:

        def grid(meta: dict[str, Any]) -> tuple[int]:
            return (-(-rows // meta["BLOCK_R"]),)

    def call() -> None:
        _compiled()[grid](
            txt,
            img,
            w_txt,
            w_img,
            cos,
            sin,
            out,
            rows,
            seq,
            seq - img.shape[1],  # text positions (none: `txt` may then be `img` itself)
            *txt.stride()[:3],
            *img.stride()[:3],
            eps,
            heads,
            width,
            **kwargs,
        )

    _TUNING.run((heads, width, str(out.dtype)), call)
