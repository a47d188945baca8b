"""Shared test setup: hermetic (offline hub, temporary data dirs) and one tiny model per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

FLUXBOT_ENV_PREFIXES = ("FLUXBOT_", "DISCORD_TOKEN")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting leaks in from the developer's shell or a .env in the working directory."""
    for name in list(os.environ):
        if name.startswith(FLUXBOT_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def tiny_runner():  # type: ignore[no-untyped-def]
    """One tiny-random FluxRunner shared by the tests that only read from it."""
    from fluxbot.engine.pipeline import FluxRunner

    return FluxRunner.tiny()


@pytest.fixture(scope="session")
def tiny_loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LoRA files for the tiny model, made once per session with peft (tests/lora_files.py):
    `ink` and `glow` (ranks 4 and 2) and `wide` (rank 8)."""
    from tests.lora_files import make_tiny_lora

    folder = tmp_path_factory.mktemp("loras")
    return {
        "ink": make_tiny_lora(folder / "ink.safetensors", seed=1),
        "glow": make_tiny_lora(folder / "glow.safetensors", seed=2, rank=2),
        "wide": make_tiny_lora(folder / "wide.safetensors", seed=3, rank=8),
    }
