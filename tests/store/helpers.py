"""Small builders shared by the store tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxbot.core.requests import GenerationRequest
from fluxbot.store import EncodedImage


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def make_request(
    prompt: str = "a red fox in snow", seed: int = 1234, **kwargs: Any
) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed, **kwargs)


def encoded(seed: int, payload: bytes | None = None, size: int = 64) -> EncodedImage:
    """A stand-in for an encoded image: distinct bytes per seed unless `payload` is given."""
    data = payload if payload is not None else (f"image-{seed}-".encode() * size)[:size]
    return EncodedImage(data=data, seed=seed, width=64, height=64, format="png")
