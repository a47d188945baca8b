"""Feathered blends of decoded pixels, made where the pixels are (the runner's device).

Outpainting pastes the kept original back over the generated canvas with a feathered edge;
the upscale sums overlapping refined tiles with weights that fall off towards each tile's
inner edges. Both take and give H x W x 3 uint8 tensors. The arithmetic is the float32 NumPy
these replaced, step for step (separate products and sums, round half to even), so the pixels
are the same; done on the H200's host CPU it took ~0.2 s of a 2048² upscale (0.37 s on a
2-core machine) and ~20 ms of each 1024² outpainting, with the card idle.
"""

from __future__ import annotations

import torch

from fluxbot.core.edits import Box
from fluxbot.engine.pixels import to_uint8


def blend_weights(
    box: Box, canvas: tuple[int, int], ramp: int, device: torch.device | str
) -> torch.Tensor:
    """Per-pixel weights of a region (height x width x 1, float32): 1 inside, falling linearly
    to ~0 over `ramp` px at each edge that lies inside the canvas (edges on the canvas border
    keep full weight)."""

    def ramp_1d(length: int, low_open: bool, high_open: bool) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float32, device=device)
        weight = torch.ones(length, dtype=torch.float32, device=device)
        if low_open:
            weight = torch.minimum(weight, (pos + 1) / (ramp + 1))
        if high_open:
            weight = torch.minimum(weight, (length - pos) / (ramp + 1))
        return weight

    wy = ramp_1d(box.height, box.y > 0, box.bottom < canvas[1])
    wx = ramp_1d(box.width, box.x > 0, box.right < canvas[0])
    return (wy[:, None] * wx[None, :])[..., None]


def paste_back(
    generated: torch.Tensor, original: torch.Tensor, keep: Box, ramp: int
) -> torch.Tensor:
    """`generated` (the whole canvas) with `original` (the kept region's pixels) over `keep`,
    feathered into the generated pixels, so what the user kept stays exactly as it was (the
    VAE round trip would soften it)."""
    height, width = generated.shape[:2]
    out = generated.to(torch.float32)
    region = (slice(keep.y, keep.bottom), slice(keep.x, keep.right))
    weight = blend_weights(keep, (width, height), ramp, generated.device)
    out[region] = weight * original.to(torch.float32) + (1 - weight) * out[region]
    return to_uint8(out)


class TileBlend:
    """The weighted sum of overlapping tiles over a canvas, on `device`."""

    def __init__(self, width: int, height: int, ramp: int, device: torch.device | str) -> None:
        self._canvas = (width, height)
        self._ramp = ramp
        self._device = device
        self._sum = torch.zeros((height, width, 3), dtype=torch.float32, device=device)
        self._weights = torch.zeros((height, width, 1), dtype=torch.float32, device=device)

    def add(self, tile: Box, pixels: torch.Tensor) -> None:
        weight = blend_weights(tile, self._canvas, self._ramp, self._device)
        region = (slice(tile.y, tile.bottom), slice(tile.x, tile.right))
        self._sum[region] += weight * pixels.to(self._device, torch.float32)
        self._weights[region] += weight

    def result(self) -> torch.Tensor:
        return to_uint8(self._sum / self._weights)
