"""Build the generation engine from settings: devices, workers, scheduler, service, composer.

Discord-free, so the bot, the benchmark and the tests assemble the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from fluxbot.app.compose import RequestComposer, load_budget
from fluxbot.app.derive import Deriver
from fluxbot.app.service import JobService
from fluxbot.app.styles import StyleCatalog, load_styles
from fluxbot.config import Backend, MemoryProfile, Settings
from fluxbot.core.edits import edit_sizes
from fluxbot.core.requests import ASPECT_PRESETS, GenerationResult, SizeLimits
from fluxbot.devices.discovery import DeviceInfo, discover_devices, select_devices
from fluxbot.devices.memory import take_snapshot
from fluxbot.devices.vendor import apply_vendor_settings
from fluxbot.engine.encoding import encode_result
from fluxbot.engine.pipeline import FluxRunner
from fluxbot.engine.placement import (
    Component,
    ReplicaPlan,
    needs_placement,
    plan_placement,
    unplanned_reason,
)
from fluxbot.engine.safety import (
    ImageClassifier,
    NudeNetClassifier,
    SafetyCheckedEncoder,
    SafetyUnavailable,
)
from fluxbot.prompts.policy import ContentPolicy
from fluxbot.serving.scheduler import Scheduler
from fluxbot.serving.workers.base import Worker
from fluxbot.serving.workers.local import LocalWorker
from fluxbot.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Engine:
    service: JobService
    scheduler: Scheduler
    composer: RequestComposer
    devices: list[DeviceInfo]
    styles: StyleCatalog
    deriver: Deriver
    classifier: ImageClassifier | None = None


def build_composer(settings: Settings) -> RequestComposer:
    budget = load_budget(settings.model)
    return RequestComposer(
        SizeLimits.from_settings(settings),
        budget,
        strict=ContentPolicy(settings.blocklist, strict=True),
        relaxed=ContentPolicy(settings.blocklist, strict=False),
    )


def plan_replicas(settings: Settings, devices: Sequence[DeviceInfo]) -> list[ReplicaPlan]:
    """One replica per device that holds the model, cards paired where one alone cannot,
    offloading last (fluxbot.engine.placement); the tiny model and the CPU need no planning."""
    if not needs_placement(settings.model, devices):
        reason = unplanned_reason(settings.model)
        return [
            ReplicaPlan({c: d.torch_device for c in Component}, MemoryProfile.FULL, reason)
            for d in devices
        ]
    free = []
    ram = 0
    for device in devices:
        snapshot = take_snapshot(device.torch_device)
        free.append((device, snapshot.device_free or device.total_memory))
        ram = snapshot.ram_available or ram
    placement = plan_placement(settings.memory_profile, free, ram)
    for replica in placement.replicas:
        log.info("%s", replica.reason)
    for unused in placement.unused:
        log.warning("%s is not used: %s", unused.device, unused.reason)
    return list(placement.replicas)


def runner_factory(
    settings: Settings,
    device: DeviceInfo,
    replica: ReplicaPlan,
    styles: StyleCatalog | None = None,
) -> Callable[[], FluxRunner]:
    """What a worker's thread calls to build its replica: vendor settings, the model placed by
    its memory profile (over several cards if planned so), the speed profile, the styles'
    LoRA slot where compiled or fp8, and (when compiled) the aspect presets warmed up."""
    loras = styles.loras() if styles is not None else []
    split = {str(c): d for c, d in replica.devices.items()} if replica.is_split else None

    def build() -> FluxRunner:
        apply_vendor_settings(device)
        return FluxRunner.load(
            settings.model,
            replica.primary,
            memory=replica.profile,
            speed=settings.speed_profile,
            cache_dir=settings.cache_dir,
            warm_sizes=list(ASPECT_PRESETS.values()),
            edit_sizes=preset_edit_sizes(settings),
            component_devices=split,
            loras=loras,
            lora_capacity=settings.max_loras,
        )

    return build


def preset_edit_sizes(settings: Settings) -> list[tuple[int, int]]:
    """The sizes an upscale or a pan of an aspect preset's image runs at, under the operator's
    limits: compiled at start too, so those image jobs never wait on a compile either."""
    sizes: list[tuple[int, int]] = []
    for width, height in ASPECT_PRESETS.values():
        sizes += edit_sizes(
            width,
            height,
            tile=settings.upscale_tile,
            max_width=settings.max_width,
            max_height=settings.max_height,
            max_megapixels=settings.max_megapixels,
            upscale_max_side=settings.upscale_max_side,
        )
    return list(dict.fromkeys(sizes))


def build_classifier(settings: Settings) -> ImageClassifier | None:
    """The image-safety classifier, or None when it is off (or could not load: logged)."""
    if not settings.image_safety:
        return None
    try:
        return NudeNetClassifier(threshold=settings.safety_threshold)
    except SafetyUnavailable as exc:
        log.error("%s; images will be posted unchecked", exc)
        return None


def _encoder(
    settings: Settings, classifier: ImageClassifier | None = None
) -> Callable[[GenerationResult], list[object]]:
    """PNG (or GIF) encoding; with a classifier, each image's safety verdict rides along."""
    encode = partial(encode_result, model=settings.model)
    if classifier is None:
        # The ignore below: the encoder returns EncodedImages; the worker API types them object.
        return encode  # type: ignore[return-value]
    # The ignore below: the encoder returns EncodedImages; the worker API types them object.
    return SafetyCheckedEncoder(encode, classifier)  # type: ignore[return-value]


def build_workers(
    settings: Settings,
    devices: Sequence[DeviceInfo],
    styles: StyleCatalog | None = None,
    classifier: ImageClassifier | None = None,
) -> list[Worker]:
    if settings.backend is Backend.RAY:
        from fluxbot.serving.workers.ray_backend import build_ray_workers

        return build_ray_workers(settings)
    by_name = {d.torch_device: d for d in devices}
    return [
        LocalWorker.from_settings(
            settings,
            replica.primary,
            runner_factory(settings, by_name[replica.primary], replica, styles),
            encode=_encoder(settings, classifier),
        )
        for replica in plan_replicas(settings, devices)
    ]


def build_engine(
    settings: Settings,
    store: Store,
    devices: Sequence[DeviceInfo] | None = None,
    styles: StyleCatalog | None = None,
) -> Engine:
    """Everything between a validated request and a stored image, not yet started.
    `styles`: the checked styles file (read from settings when not given; StylesError if bad)."""
    if styles is None:
        styles = load_styles(settings)
    if devices is None:
        devices = select_devices(settings.gpus, discover_devices())
    classifier = build_classifier(settings)
    workers = build_workers(settings, devices, styles, classifier)
    scheduler = Scheduler.from_settings(settings, workers)
    service = JobService(store, scheduler, classifier=classifier)
    log.info("engine: %d worker(s) on %s", len(workers), ", ".join(w.device for w in workers))
    composer = build_composer(settings)
    deriver = Deriver(store, composer, upscale_tile=settings.upscale_tile)
    return Engine(service, scheduler, composer, list(devices), styles, deriver, classifier)
