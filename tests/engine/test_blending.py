"""Feathered blends on the device: the same pixels as the float32 NumPy they replaced."""

from __future__ import annotations

import numpy as np
import torch

from fluxbot.core.edits import Box, tile_grid
from fluxbot.engine.blending import TileBlend, blend_weights, paste_back


def _numpy_weights(box: Box, canvas: tuple[int, int], ramp: int) -> np.ndarray:
    """The NumPy weights the upscale and outpainting used before (the reference)."""
    ys = np.arange(box.height, dtype=np.float32)
    xs = np.arange(box.width, dtype=np.float32)

    def ramp_1d(pos: np.ndarray, length: int, low_open: bool, high_open: bool) -> np.ndarray:
        weight = np.ones(length, dtype=np.float32)
        if low_open:
            weight = np.minimum(weight, (pos + 1) / (ramp + 1))
        if high_open:
            weight = np.minimum(weight, (length - pos) / (ramp + 1))
        return weight

    wy = ramp_1d(ys, box.height, box.y > 0, box.bottom < canvas[1])
    wx = ramp_1d(xs, box.width, box.x > 0, box.right < canvas[0])
    return wy[:, None] * wx[None, :]


def _random_pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_weights_fall_off_only_at_edges_inside_the_canvas() -> None:
    corner = blend_weights(Box(0, 0, 40, 30), (100, 100), 8, "cpu")[..., 0]
    assert corner.shape == (30, 40)
    assert corner[0, 0] == 1  # the canvas border keeps full weight
    assert corner[-1, -1] < corner[-10, -10] == 1  # inner edges fall off
    for box in (Box(0, 0, 40, 30), Box(20, 10, 40, 30), Box(60, 70, 40, 30)):
        ours = blend_weights(box, (100, 100), 8, "cpu")[..., 0].numpy()
        assert np.array_equal(ours, _numpy_weights(box, (100, 100), 8))


def test_paste_back_feathers_the_original_into_the_generated_border() -> None:
    generated = torch.zeros((64, 64, 3), dtype=torch.uint8)
    original = torch.full((32, 32, 3), 200, dtype=torch.uint8)
    out = paste_back(generated, original, Box(16, 16, 32, 32), 8).numpy()
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert (out[:16] == 0).all()  # outside the kept box: generated
    assert (out[28:36, 28:36] == 200).all()  # well inside: original
    assert 0 < out[16, 32, 0] < 200  # on the edge: a blend


def test_paste_back_matches_the_numpy_blend_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    generated, canvas_original = _random_pixels(rng, 96, 160), _random_pixels(rng, 96, 160)
    keep = Box(40, 0, 120, 80)  # touches the top and right borders: those keep full weight
    # The NumPy version it replaced.
    out = generated.astype(np.float32)
    weight = _numpy_weights(keep, (160, 96), 16)[..., None]
    region = (slice(keep.y, keep.bottom), slice(keep.x, keep.right))
    src = canvas_original.astype(np.float32)
    out[region] = weight * src[region] + (1 - weight) * out[region]
    expected = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    ours = paste_back(
        torch.from_numpy(generated), torch.from_numpy(canvas_original[region].copy()), keep, 16
    )
    assert np.array_equal(ours.numpy(), expected)


def test_tiles_blend_as_the_numpy_sum_did_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    width, height = 400, 336
    tiles = tile_grid(width, height, 256)
    assert len(tiles) == 6  # overlapping in both directions, three deep across
    refined = [_random_pixels(rng, tile.height, tile.width) for tile in tiles]
    acc = np.zeros((height, width, 3), dtype=np.float32)
    weight_sum = np.zeros((height, width, 1), dtype=np.float32)
    blend = TileBlend(width, height, 48, "cpu")
    for tile, pixels in zip(tiles, refined, strict=True):
        weight = _numpy_weights(tile, (width, height), 48)[..., None]
        region = (slice(tile.y, tile.bottom), slice(tile.x, tile.right))
        acc[region] += weight * pixels.astype(np.float32)
        weight_sum[region] += weight
        blend.add(tile, torch.from_numpy(pixels))
    expected = np.clip(np.rint(acc / weight_sum), 0, 255).astype(np.uint8)
    assert np.array_equal(blend.result().numpy(), expected)


def test_a_single_tile_comes_back_unchanged() -> None:
    rng = np.random.default_rng(7)
    pixels = _random_pixels(rng, 64, 48)
    blend = TileBlend(48, 64, 8, "cpu")
    blend.add(Box(0, 0, 48, 64), torch.from_numpy(pixels))
    assert np.array_equal(blend.result().numpy(), pixels)
