"""One pass for the FLUX double blocks' feed-forwards: GELU and the row-wise fp8 quantise.

Each double block's `ff` (and `ff_context`) is Linear -> GELU(tanh) -> Linear. Under `fast` the
down-projection's input, 12,288 wide, was built by Inductor in a looped reduction that reads the
GELU output twice (row-wise amax, then the quantise): 10.5 ms of the 4 steps at 1024x1024 on an
H200, 138 us a call (bench/results/2026-12-03-nvidia-h200-20-kernels-fast.json). The single
blocks' kernel (`fluxbot::gelu_cat_quantize`) does the same with nothing to concatenate in one
read, and `fuse_feed_forwards_` makes each eligible feed-forward call it.

A feed-forward whose down-projection carries a LoRA (a style's slot), or whose diffusers code is
not the one followed here, keeps its own forward.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
from torch import nn

from fluxbot.engine.bf16_epilogues import FOLLOWED_GELU
from fluxbot.engine.fp8 import is_dynamic_fp8
from fluxbot.engine.fp8_fused import drop_forward_, gelu_cat_quantize, warm_gelu_quantize
from fluxbot.engine.single_block import forward_fingerprint, rows

log = logging.getLogger(__name__)

FOLLOWED_FEED_FORWARD = "1c9cc6e8159c"
"""The start of `forward_fingerprint` of diffusers 0.42's FeedForward.forward, which
`_fused_forward` follows (with its GELU module's, FOLLOWED_GELU); other code is never replaced."""


def _fused_forward(self: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """diffusers' FeedForward.forward (0.42) for `Linear -> GELU(tanh) -> Dropout -> Linear`
    with the GELU and the down-projection's input quantisation in one kernel (diffusers' own
    while the down-projection is not a plain dynamic fp8 linear, e.g. once a LoRA wraps it)."""
    down = self.net[2]
    if args or kwargs or self.training or not is_dynamic_fp8(down):
        return type(self).forward(self, hidden_states, *args, **kwargs)
    pre = self.net[0].proj(hidden_states)
    flat = rows(pre)
    xq, x_scale = gelu_cat_quantize(flat[:, :0], flat)
    return down.matmul_quantized(xq, x_scale, pre.shape[:-1], pre.dtype)


def _follows_diffusers(ff: nn.Module) -> bool:
    net = getattr(ff, "net", None)
    return (
        isinstance(net, nn.ModuleList)
        and len(net) == 3
        and forward_fingerprint(type(ff).forward).startswith(FOLLOWED_FEED_FORWARD)
        and type(net[0]).__name__ == "GELU"
        and forward_fingerprint(type(net[0]).forward).startswith(FOLLOWED_GELU)
        and type(net[1]) is nn.Dropout
    )


def fusable(ff: nn.Module) -> bool:
    """A diffusers FeedForward of a FLUX double block: a GELU(tanh) up-projection, dropout and a
    dynamic fp8 down-projection, running the code `_fused_forward` follows."""
    if type(ff).__name__ != "FeedForward" or not _follows_diffusers(ff):
        return False
    net: Any = ff.net
    gelu, down = net[0], net[2]
    return (
        getattr(gelu, "approximate", None) == "tanh"
        and isinstance(getattr(gelu, "proj", None), nn.Module)
        and is_dynamic_fp8(down)
        and down.in_features == getattr(gelu.proj, "out_features", -1)
    )


def fuse_feed_forwards_(transformer: nn.Module) -> int:
    """Give every eligible feed-forward the one-pass forward; returns how many."""
    fused: list[Any] = []
    other_code = 0
    for module in transformer.modules():
        if fusable(module):
            module.forward = types.MethodType(_fused_forward, module)
            fused.append(module)
        elif type(module).__name__ == "FeedForward" and not _follows_diffusers(module):
            other_code += 1
    if other_code:
        log.warning(
            "speed: %d feed-forward(s) run code other than the diffusers forward fluxbot's "
            "one-pass fp8 quantise follows; they keep their own (slower, still correct)",
            other_code,
        )
    for width, down in {ff.net[2].in_features: ff.net[2] for ff in fused}.items():
        warm_gelu_quantize(down, 0, width)
    return len(fused)


def unfuse_feed_forwards_(transformer: nn.Module) -> int:
    """Back to diffusers' own forward (benchmarks compare both); returns how many."""
    return drop_forward_(transformer, _fused_forward)
