"""GIF encoding within a byte budget."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from fluxbot.engine.animation import GifTooLarge, encode_gif


def _frames(count: int, size: int = 128) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


def test_a_gif_that_fits_keeps_every_frame() -> None:
    gif = encode_gif(_frames(6), max_bytes=10 * 2**20)
    frames = iio.imread(io.BytesIO(gif.data), index=None)
    assert frames.shape[0] == 6 and gif.notes == ()
    assert gif.data.startswith(b"GIF89a")


def test_a_tight_budget_degrades_until_it_fits() -> None:
    full = encode_gif(_frames(8), max_bytes=10 * 2**20)
    budget = len(full.data) // 6
    small = encode_gif(_frames(8), max_bytes=budget)
    assert len(small.data) <= budget
    assert small.notes, "the caller must learn what was given up"


def test_a_budget_nothing_fits_says_so() -> None:
    with pytest.raises(GifTooLarge, match="does not fit"):
        encode_gif(_frames(4), max_bytes=500)


def test_needs_two_frames() -> None:
    with pytest.raises(ValueError):
        encode_gif(_frames(1), max_bytes=10**6)
