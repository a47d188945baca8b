"""The Triton kernel behind `fluxbot::gelu_cat_quantize` (fluxbot.engine.fp8_fused).

One program per row: the attention output's row and the MLP pre-activation's row are loaded
once and kept in registers, GELU (tanh) is applied to the MLP part and rounded to the
activations' dtype as the unfused path rounds it, and the row's amax gives its scale; the fp8
row and the scale are written. Kept apart, without postponed annotations, because Triton reads
the `tl.constexpr` annotations of the kernel's signature.
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
    # Constants are literals in the kernel: Triton reads globals only as constexpr objects,
    # which its interpreter does not take in every op (448: e4m3's largest finite value).

    def _gelu_cat_quantize_rows(
        attn_ptr,
        mlp_ptr,
        q_ptr,
        scale_ptr,
        attn_stride,
        mlp_stride,
        A: tl.constexpr,
        H: tl.constexpr,
        BLOCK_A: tl.constexpr,
        BLOCK_H: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        offs_a = tl.arange(0, BLOCK_A)
        offs_h = tl.arange(0, BLOCK_H)
        a_raw = tl.load(attn_ptr + row * attn_stride + offs_a, mask=offs_a < A, other=0.0)
        m = tl.load(mlp_ptr + row * mlp_stride + offs_h, mask=offs_h < H, other=0.0)
        a = a_raw.to(tl.float32)
        x = m.to(tl.float32)
        # GELU(tanh): 0.5 x (1 + tanh(u)) == x * sigmoid(2u); rounded to the input dtype as
        # the concatenated activation is in the unfused path.
        g = x * tl.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))  # 2 sqrt(2/pi)
        g = g.to(a_raw.dtype).to(tl.float32)
        amax = tl.maximum(tl.max(tl.abs(a), axis=0), tl.max(tl.abs(g), axis=0))
        scale = tl.maximum(amax, 1e-12) / 448.0
        tl.store(scale_ptr + row, scale)
        out = q_ptr + row * (A + H)
        qa = tl.clamp(a / scale, -448.0, 448.0).to(tl.float8e4nv)
        qg = tl.clamp(g / scale, -448.0, 448.0).to(tl.float8e4nv)
        tl.store(out + offs_a, qa, mask=offs_a < A)
        tl.store(out + A + offs_h, qg, mask=offs_h < H)


def available() -> bool:
    return tl is not None


@functools.cache
def _compiled() -> Any:
    import triton

    kernel = triton.jit(_gelu_cat_quantize_rows)
    if os.environ.get("TRITON_INTERPRET") == "1":
        # Triton's interpreter (set before Triton is imported: the CPU tests do so in a
        # subprocess) runs the same kernel on CPU tensors; it has nothing to autotune.
        return kernel
    # Warps per row: tried once per width at the first call (the outputs are rewritten whole
    # each time, so the trials leave nothing behind).
    configs = [triton.Config({}, num_warps=w) for w in WARPS]
    return triton.autotune(configs=configs, key=["A", "H"])(kernel)


WARPS = (4, 8, 16, 32)
_TUNING = FirstCallGuard()


def launch(attn: Any, mlp: Any, q: Any, scale: Any) -> None:
    """Fill `q` (rows x (A + H), fp8 e4m3) and `scale` (rows x 1, fp32) from 2-D `attn`
    (rows x A; A may be 0) and `mlp` (rows x H) whose last dimension is contiguous."""
    import triton

    rows, a_width = attn.shape
    h_width = mlp.shape[1]
    read_attn = attn if a_width else mlp  # nothing is read from it (its loads are masked off)

    def call() -> None:
        _compiled()[(rows,)](
            read_attn,
            mlp,
            q,
            scale,
            read_attn.stride(0),
            mlp.stride(0),
            a_width,
            h_width,
            max(1, triton.next_power_of_2(a_width)),
            triton.next_power_of_2(h_width),
        )

    _TUNING.run((a_width, h_width, str(mlp.dtype)), call)
