"""PNG (and lossless WebP) encoders on this machine's CPU, for a 1024x1024 image: what each costs
between the GPU and the user, with the parameters embedded, and what it sends."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image


def test_image(side: int = 1024, seed: int = 0) -> Image.Image:
    """Gradients with mild noise: compresses like a photo-ish render, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([(x / 4) % 256, (y / 4) % 256, ((x + y) / 8) % 256], -1)
    return Image.fromarray((base + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8))


def _median_ms(fn: Callable[[], bytes], repeats: int) -> tuple[float, int]:
    data = fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data = fn()
        times.append(1000 * (time.perf_counter() - started))
    return sorted(times)[len(times) // 2], len(data)


def run_png(repeats: int = 7) -> dict[str, Any]:
    from fluxbot.engine.encoding import encode_png, read_parameters

    image = test_image()
    params = {"prompt": "a lighthouse on a cliff at dusk ✓", "width": 1024, "height": 1024}

    def pillow(level: int, **extra: Any) -> Callable[[], bytes]:
        def encode() -> bytes:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=level, **extra)
            return buffer.getvalue()

        return encode

    def webp(method: int) -> Callable[[], bytes]:
        def encode() -> bytes:
            buffer = io.BytesIO()
            image.save(buffer, format="WEBP", lossless=True, method=method, quality=0)
            return buffer.getvalue()

        return encode

    options: dict[str, Callable[[], bytes]] = {
        "fluxbot encode_png (fpng + tEXt/iTXt)": lambda: encode_png(image, params, 1).data,
        "pillow png level 0": pillow(0),
        "pillow png level 1": pillow(1),
        "pillow png level 4 (before)": pillow(4),
        "pillow png level 6": pillow(6),
        "pillow png level 1, no filter (zlib only)": pillow(1, optimize=False),
        "webp lossless method 0": webp(0),
        "webp lossless method 4": webp(4),
    }
    out: dict[str, Any] = {}
    for name, fn in options.items():
        ms, size = _median_ms(fn, repeats)
        out[name] = {"ms": ms, "bytes": size}
    embedded = read_parameters(encode_png(image, params, 1).data)
    out["parameters_read_back"] = embedded.get("prompt") == params["prompt"]
    return out
