"""GIF sequences: frames from a seed (or prompt) morph, encoded to fit a byte budget.

The frames themselves come from `FluxRunner.generate` with an `AnimationSpec` (spherical
interpolation of two seeds' initial noise, or a blend of two prompts' embeddings). This module
only encodes: it tries the full GIF, then fewer colours, then smaller frames, then fewer frames,
and says so when nothing fits.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import imageio.v3 as iio
import numpy as np
from PIL import Image

from fluxbot.core.errors import UserError

COLOUR_STEPS = (256, 128, 64, 32)
SCALE_STEPS = (1.0, 0.75, 0.5, 0.375, 0.25)
MIN_FRAMES = 2


class GifTooLarge(UserError, ValueError):
    """No encoding of these frames fits the byte budget; the message says by how much."""


@dataclass(frozen=True, slots=True)
class EncodedGif:
    data: bytes
    frames: int
    width: int
    height: int
    colours: int
    notes: tuple[str, ...] = ()


def _quantise(frames: Sequence[Image.Image], colours: int, scale: float) -> list[np.ndarray]:
    out = []
    for frame in frames:
        image = frame.convert("RGB")
        if scale != 1.0:
            size = (max(16, int(image.width * scale)), max(16, int(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        if colours < 256:
            image = image.quantize(colors=colours, dither=Image.Dither.FLOYDSTEINBERG).convert(
                "RGB"
            )
        out.append(np.asarray(image))
    return out


def _encode(arrays: list[np.ndarray], fps: float) -> bytes:
    buffer = io.BytesIO()
    duration_ms = round(1000 / fps)
    iio.imwrite(buffer, arrays, extension=".gif", duration=duration_ms, loop=0)
    return buffer.getvalue()


def _thin(frames: Sequence[Image.Image], keep: int) -> list[Image.Image]:
    """Keep `keep` frames evenly spread, first and last included."""
    if keep >= len(frames):
        return list(frames)
    idx = np.linspace(0, len(frames) - 1, keep).round().astype(int)
    return [frames[i] for i in idx]


def encode_gif(frames: Sequence[Image.Image], max_bytes: int, fps: float = 8.0) -> EncodedGif:
    """A looping GIF no larger than `max_bytes`, degrading colours, then size, then frame count."""
    if len(frames) < MIN_FRAMES:
        raise ValueError(f"a GIF needs at least {MIN_FRAMES} frames, got {len(frames)}")
    counts = sorted({len(frames), max(MIN_FRAMES, len(frames) // 2), MIN_FRAMES}, reverse=True)
    for count in counts:
        chosen = _thin(frames, count)
        for scale in SCALE_STEPS:
            for colours in COLOUR_STEPS:
                arrays = _quantise(chosen, colours, scale)
                data = _encode(arrays, fps)
                if len(data) <= max_bytes:
                    notes = []
                    if colours < 256:
                        notes.append(f"{colours} colours")
                    if scale < 1.0:
                        notes.append(f"scaled to {int(scale * 100)}%")
                    if count < len(frames):
                        notes.append(f"{count} of {len(frames)} frames")
                    height, width = arrays[0].shape[:2]
                    return EncodedGif(data, count, width, height, colours, tuple(notes))
    raise GifTooLarge(
        f"the animation does not fit in {max_bytes} bytes even at {MIN_FRAMES} frames, "
        f"{COLOUR_STEPS[-1]} colours and {int(SCALE_STEPS[-1] * 100)}% size"
    )
