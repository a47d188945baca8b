"""Decoded pictures as uint8 tensors and PIL images, as diffusers' postprocessing makes them."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

from fluxbot.engine.pixels import image_tensor, pil_images, to_pil, to_uint8, uint8_pixels


def _pixels(image: object) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_pixels_match_diffusers_postprocessing() -> None:
    decoded = torch.rand(2, 3, 40, 24) * 2.2 - 1.1  # beyond [-1, 1] on purpose: clamped
    ours = to_pil(decoded)
    theirs = VaeImageProcessor(vae_scale_factor=16).postprocess(decoded, output_type="pil")
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.size == (24, 40) and mine.mode == "RGB"
        assert np.abs(_pixels(mine) - _pixels(reference)).max() <= 1


def test_uint8_pixels_are_channels_last_and_contiguous() -> None:
    pixels = uint8_pixels(torch.zeros(1, 3, 8, 6))
    assert pixels.shape == (1, 8, 6, 3) and pixels.dtype == torch.uint8
    assert pixels.is_contiguous() and int(pixels[0, 0, 0, 0]) == 128  # 0 -> mid grey


def test_rounding_is_half_to_even_and_clipped() -> None:
    values = torch.tensor([-3.0, 0.5, 1.5, 2.5, 254.5, 300.0])
    assert to_uint8(values).tolist() == np.clip(np.rint(values.numpy()), 0, 255).tolist()


def test_an_array_round_trips_through_the_device_tensor() -> None:
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)[:, ::-1]  # not contiguous
    tensor = image_tensor(array, "cpu")
    assert np.array_equal(np.asarray(pil_images(tensor[None])[0]), array)


def test_a_read_only_array_is_copied_not_shared() -> None:
    # A PIL image's buffer is read-only; a CPU tensor sharing it warned (and writing to it was
    # undefined behaviour).
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = image_tensor(array, "cpu")
    tensor += 1
    assert array[0, 0, 0] == 0
