"""Assembling the engine from settings: replicas planned per device, one worker each."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxbot.app.root import build_engine, build_workers, plan_replicas
from fluxbot.config import MemoryProfile, load_settings
from fluxbot.devices.discovery import DeviceInfo, Vendor
from fluxbot.engine.placement import ProfileError
from fluxbot.serving.workers.local import LocalWorker
from fluxbot.store import Store

GB = 10**9
FLUX = "black-forest-labs/FLUX.1-schnell"


def _gpu(index: int, name: str, memory: int, capability: tuple[int, int]) -> DeviceInfo:
    return DeviceInfo(index, f"cuda:{index}", name, Vendor.NVIDIA, memory, capability)


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


def test_big_cards_each_get_a_resident_replica() -> None:
    settings = load_settings(model=FLUX)
    cards = [_gpu(0, "NVIDIA H100", 80 * GB, (9, 0)), _gpu(1, "NVIDIA H100", 80 * GB, (9, 0))]
    replicas = plan_replicas(settings, cards)
    assert [(r.primary, r.profile, r.is_split) for r in replicas] == [
        ("cuda:0", MemoryProfile.FULL, False),
        ("cuda:1", MemoryProfile.FULL, False),
    ]
    assert [w.device for w in build_workers(settings, cards)] == ["cuda:0", "cuda:1"]


def test_two_cards_too_small_alone_share_one_replica() -> None:
    settings = load_settings(model=FLUX)
    cards = [_gpu(0, "Tesla V100", 32 * GB, (7, 0)), _gpu(1, "Tesla V100", 32 * GB, (7, 0))]
    (replica,) = plan_replicas(settings, cards)
    assert replica.is_split and replica.profile is MemoryProfile.FULL
    assert replica.devices["vae"] == replica.primary
    assert replica.devices["text_encoder_2"] != replica.primary
    assert [w.device for w in build_workers(settings, cards)] == [replica.primary]


def test_an_explicit_profile_the_card_cannot_run_stops_start_up() -> None:
    settings = load_settings(model=FLUX, memory_profile="full")
    with pytest.raises(ProfileError, match="FLUXBOT_MEMORY_PROFILE=full"):
        plan_replicas(settings, [_gpu(0, "NVIDIA GeForce RTX 3060", 12 * GB, (8, 6))])


def test_the_tiny_model_needs_no_planning() -> None:
    settings = load_settings(model="tiny-random", memory_profile="lowvram")
    (replica,) = plan_replicas(settings, [_gpu(0, "small", 2 * GB, (7, 5))])
    assert replica.profile is MemoryProfile.FULL and not replica.is_split
