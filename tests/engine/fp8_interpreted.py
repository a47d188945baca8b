"""The fp8 quantise kernel (fluxbot.engine.fp8_kernel) run by Triton's interpreter on the CPU,
and the comparison of its output with the reference that allows for the interpreter's fp8
conversion; shared by the tests of the ops that use the kernel."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.engine.triton_interpreted import run_interpreted

_INTERPRETED = """
import sys, torch
from fluxbot.engine import fp8_kernel
attn, mlp = torch.load(sys.argv[1])
q = torch.empty(attn.shape[0], attn.shape[1] + mlp.shape[1], dtype=torch.float8_e4m3fn)
scale = torch.empty(attn.shape[0], 1)
fp8_kernel.launch(attn, mlp, q, scale)
torch.save((q, scale), sys.argv[2])
"""


def run_kernel_interpreted(
    attn: torch.Tensor, mlp: torch.Tensor, tmp_path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """fluxbot.engine.fp8_kernel run by Triton's interpreter on the CPU."""
    result: tuple[torch.Tensor, torch.Tensor] = run_interpreted(_INTERPRETED, (attn, mlp), tmp_path)
    return result


def assert_matches_allowing_for_the_interpreter(
    q: torch.Tensor,
    scale: torch.Tensor,
    rq: torch.Tensor,
    rscale: torch.Tensor,
    max_share_off: float = 0.05,
) -> None:
    # Triton's interpreter converts to fp8 unlike the card (which rounds to nearest even): it
    # flushes subnormals to zero, rounds ties away from zero, and loses the carry when a value
    # rounds up to a power of two (127.9 -> 64). Compare the normal range allowing for those:
    # each value one fp8 step off at most, or half of a power of two, and few values off.
    got, want = q.float(), rq.float()
    normal = want.abs() >= 2**-6
    assert normal.float().mean() > 0.5
    off = (got - want).abs() > 0
    one_step = (got - want).abs() <= 0.125 * want.abs()
    lost_carry = (torch.log2(got.abs()).frac() == 0) & (
        (2 * got - want).abs() <= 0.125 * want.abs()
    )
    assert bool((one_step | lost_carry)[normal].all())
    assert float(off[normal].float().mean()) < max_share_off
    kept = normal & ~lost_carry
    dequantised, expected = (got * scale)[kept], (want * rscale)[kept]
    assert float((dequantised - expected).norm() / expected.norm()) < 0.01
