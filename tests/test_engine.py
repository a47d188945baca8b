"""Assembling the engine from settings: workers per device, memory profile per device."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxbot.config import MemoryProfile, load_settings
from fluxbot.engine import build_engine, choose_memory_profile
from fluxbot.gpu import DeviceInfo, Vendor
from fluxbot.placement import ProfileError
from fluxbot.store import Store
from fluxbot.worker import LocalWorker

GB = 10**9


def _gpu(name: str, memory: int, capability: tuple[int, int]) -> DeviceInfo:
    return DeviceInfo(0, "cuda:0", name, Vendor.NVIDIA, memory, capability)


async def test_one_local_worker_per_selected_device(tmp_path: Path) -> None:
    settings = load_settings(model="tiny-random", gpus="cpu", data_dir=tmp_path)
    store = await Store.open(settings)
    try:
        engine = build_engine(settings, store)
        assert [w.device for w in engine.scheduler.workers] == ["cpu"]
        assert isinstance(engine.scheduler.workers[0], LocalWorker)
        assert engine.composer.limits.max_steps == settings.max_steps
    finally:
        await store.close()


def test_a_big_card_runs_everything_resident() -> None:
    settings = load_settings(model="black-forest-labs/FLUX.1-schnell")
    assert choose_memory_profile(settings, _gpu("NVIDIA H100", 80 * GB, (9, 0))) is (
        MemoryProfile.FULL
    )


def test_an_explicit_profile_the_card_cannot_run_stops_start_up() -> None:
    settings = load_settings(model="black-forest-labs/FLUX.1-schnell", memory_profile="full")
    with pytest.raises(ProfileError, match="FLUXBOT_MEMORY_PROFILE=full"):
        choose_memory_profile(settings, _gpu("NVIDIA GeForce RTX 3060", 12 * GB, (8, 6)))


def test_the_tiny_model_and_the_cpu_need_no_profile_choice() -> None:
    settings = load_settings(model="tiny-random", memory_profile="lowvram")
    assert choose_memory_profile(settings, _gpu("small", 2 * GB, (7, 5))) is MemoryProfile.FULL
