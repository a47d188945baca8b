"""PNG parameters and re-encoding to fit upload limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fluxbot.engine.encoding import (
    encode_png,
    fast_png,
    fit_upload,
    read_parameters,
    with_text_chunks,
)


def _noise(size: int = 512, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_png_carries_its_own_parameters() -> None:
    params = {"prompt": "a red fox", "negative": "blur", "seed": 1, "count": 4, "width": 512}
    encoded = encode_png(_noise(), params, seed=3)
    read = read_parameters(encoded.data)
    assert read["prompt"] == "a red fox" and read["seed"] == 3 and read["count"] == 1
    with Image.open(io.BytesIO(encoded.data)) as image:
        assert "Seed: 3" in image.text["parameters"]
        assert "Negative prompt: blur" in image.text["parameters"]


def test_small_images_are_left_alone() -> None:
    encoded = encode_png(_noise(64), {}, seed=1)
    assert fit_upload(encoded, len(encoded.data)) is encoded


@pytest.mark.parametrize(
    ("limit_fraction", "expected"), [(0.8, "jpeg"), (0.2, "jpeg"), (0.02, "jpeg")]
)
def test_large_images_shrink_to_the_limit(limit_fraction: float, expected: str) -> None:
    encoded = encode_png(_noise(), {}, seed=1)
    limit = int(len(encoded.data) * limit_fraction)
    fitted = fit_upload(encoded, limit)
    assert len(fitted.data) <= limit and fitted.format == expected
    assert fitted.note and fitted.seed == 1


def test_smooth_images_prefer_lossless_webp() -> None:
    gradient = np.tile(np.arange(512, dtype=np.uint16)[None, :, None] // 2, (512, 1, 3))
    image = Image.fromarray(gradient.astype(np.uint8))
    encoded = encode_png(image, {}, seed=1)
    fitted = fit_upload(encoded, len(encoded.data) - 1)
    assert fitted.format == "webp" and "lossless" in fitted.note
    with Image.open(io.BytesIO(fitted.data)) as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(image))


def test_an_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        fit_upload(encode_png(_noise(), {}, seed=1), 100)


def test_png_pixels_survive_and_unicode_parameters_are_read_back() -> None:
    image = _noise(256, seed=4)
    params = {"prompt": "ein Fuchs 🦊 im Schnee — 雪", "negative": "blur", "width": 256}
    encoded = encode_png(image, params, seed=9)
    assert fast_png(image) is not None  # fpng wrote it (the fast path runs here)
    with Image.open(io.BytesIO(encoded.data)) as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(image))
        assert back.text["parameters"].startswith("ein Fuchs 🦊 im Schnee — 雪")
    assert read_parameters(encoded.data)["prompt"] == params["prompt"]
    assert read_parameters(encoded.data)["seed"] == 9


def test_modes_fpng_cannot_write_fall_back_to_pillow() -> None:
    gray = _noise(64).convert("L")
    assert fast_png(gray) is None
    encoded = encode_png(gray, {"prompt": "grey"}, seed=2)
    assert read_parameters(encoded.data)["prompt"] == "grey"
    with Image.open(io.BytesIO(encoded.data)) as back:
        assert np.array_equal(np.asarray(back), np.asarray(gray))


def test_text_chunks_are_inserted_after_the_header_only() -> None:
    png = fast_png(_noise(32))
    assert png is not None
    data = with_text_chunks(png, {"k": "latin text", "u": "ünïcødé ✓"})
    assert data.index(b"tEXtk\0latin text") < data.index(b"IDAT")
    assert b"iTXtu\0" in data
    with pytest.raises(ValueError, match="not a PNG"):
        with_text_chunks(b"GIF89a" + png[6:], {"k": "v"})
