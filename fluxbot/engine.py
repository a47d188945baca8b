"""Build the generation engine from settings: devices, workers, scheduler, service, composer.

Discord-free, so the bot, the benchmark and the tests assemble the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from fluxbot.compose import RequestComposer, load_budget
from fluxbot.config import Backend, MemoryProfile, Settings
from fluxbot.gpu import DeviceInfo, apply_vendor_settings, discover_devices, select_devices
from fluxbot.images import encode_result
from fluxbot.memory import take_snapshot
from fluxbot.pipeline import TINY_RANDOM, FluxRunner
from fluxbot.placement import choose_profile
from fluxbot.prompts.policy import ContentPolicy
from fluxbot.requests import ASPECT_PRESETS, GenerationResult, SizeLimits
from fluxbot.scheduler import Scheduler
from fluxbot.service import JobService
from fluxbot.store import Store
from fluxbot.worker import LocalWorker, Worker

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Engine:
    service: JobService
    scheduler: Scheduler
    composer: RequestComposer
    devices: list[DeviceInfo]


def build_composer(settings: Settings) -> RequestComposer:
    budget = load_budget(settings.model)
    return RequestComposer(
        SizeLimits.from_settings(settings),
        budget,
        strict=ContentPolicy(settings.blocklist, strict=True),
        relaxed=ContentPolicy(settings.blocklist, strict=False),
    )


def choose_memory_profile(settings: Settings, device: DeviceInfo) -> MemoryProfile:
    """The memory profile `device` runs: the setting, or under `auto` the best that fits now.

    A profile the device cannot run raises `ProfileError` (a one-line start-up error).
    """
    if settings.model == TINY_RANDOM or not device.is_gpu:
        return MemoryProfile.FULL
    snapshot = take_snapshot(device.torch_device)
    free = snapshot.device_free if snapshot.device_free is not None else device.total_memory
    ram = snapshot.ram_available or 0
    choice = choose_profile(settings.memory_profile, device, free, ram)
    log.info("%s", choice.reason)
    return choice.profile


def runner_factory(settings: Settings, device: DeviceInfo) -> Callable[[], FluxRunner]:
    """What a worker's thread calls to build its replica: vendor settings, the model placed by
    its memory profile, the speed profile, and (when compiled) the aspect presets warmed up."""
    memory = choose_memory_profile(settings, device)

    def build() -> FluxRunner:
        apply_vendor_settings(device)
        return FluxRunner.load(
            settings.model,
            device.torch_device,
            memory=memory,
            speed=settings.speed_profile,
            cache_dir=settings.cache_dir,
            warm_sizes=list(ASPECT_PRESETS.values()),
        )

    return build


def _encoder(settings: Settings) -> Callable[[GenerationResult], list[object]]:
    return partial(encode_result, model=settings.model)  # type: ignore[return-value]


def build_workers(settings: Settings, devices: Sequence[DeviceInfo]) -> list[Worker]:
    if settings.backend is Backend.RAY:
        from fluxbot.ray_backend import build_ray_workers

        return build_ray_workers(settings)
    return [
        LocalWorker.from_settings(
            settings,
            device.torch_device,
            runner_factory(settings, device),
            encode=_encoder(settings),
        )
        for device in devices
    ]


def build_engine(
    settings: Settings, store: Store, devices: Sequence[DeviceInfo] | None = None
) -> Engine:
    """Everything between a validated request and a stored image, not yet started."""
    if devices is None:
        devices = select_devices(settings.gpus, discover_devices())
    workers = build_workers(settings, devices)
    scheduler = Scheduler.from_settings(settings, workers)
    service = JobService(store, scheduler)
    log.info("engine: %d worker(s) on %s", len(workers), ", ".join(w.device for w in workers))
    return Engine(service, scheduler, build_composer(settings), list(devices))
