"""The ETA model: seconds per image-step learnt per size class on one device, and the counters
`/gpu` shows; shared by the local and the Ray workers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fluxbot.core.requests import GenerationRequest, JobStatus
from fluxbot.serving.job import JobOutcome

DEFAULT_S_PER_MEGAPIXEL_STEP = 0.5
"""Seed for ETAs before the first measurement: ~2 s for a 1024x1024 4-step image (H100, bf16)."""


def size_class(request: GenerationRequest) -> float:
    """Megapixel bucket for speed statistics: 1/16 (256x256), 1/4 (512x512), 1/2, 1, 2, ...
    of one transformer pass (an upscale's tile, not its whole target)."""
    return 2.0 ** max(-4, math.ceil(math.log2(max(request.pass_megapixels, 1e-6))))


def work_units(request: GenerationRequest) -> float:
    """Transformer passes a request costs: images x the steps it really runs (an image job at
    strength s runs its share) x tiles, twice with true CFG."""
    return request.transformer_passes


class SpeedModel:
    """Moving average of generation seconds per image-step, per size class, on one device.

    Before a class has a measurement, the estimate scales a default by the class's megapixels;
    the first measurement replaces that guess, later ones are averaged in.
    """

    def __init__(
        self, default_s_per_megapixel_step: float = DEFAULT_S_PER_MEGAPIXEL_STEP, alpha: float = 0.3
    ) -> None:
        self._default = default_s_per_megapixel_step
        self._alpha = alpha
        self._per_unit: dict[float, float] = {}

    def estimate(self, request: GenerationRequest) -> float:
        bucket = size_class(request)
        per_unit = self._per_unit.get(bucket, self._default * bucket)
        return per_unit * work_units(request)

    def record(self, requests: Sequence[GenerationRequest], seconds: float) -> None:
        """Learn from one batch (its requests share a size, hence a class)."""
        units = sum(work_units(r) for r in requests)
        if not requests or units <= 0 or seconds <= 0:
            return
        bucket = size_class(requests[0])
        measured = seconds / units
        old = self._per_unit.get(bucket)
        self._per_unit[bucket] = (
            measured if old is None else (1 - self._alpha) * old + self._alpha * measured
        )


class BatchTally:
    """What a worker learns from its finished batches: the speed model behind the ETAs and the
    counters `/gpu` shows. A fresh replica's first batch pays for warm-up (allocations,
    autotuning, compilation), so it is counted but not measured."""

    def __init__(self, speed: SpeedModel | None = None) -> None:
        self.speed = speed or SpeedModel()
        self.warm = False
        self.jobs_done = 0
        self.images_done = 0
        self.device_seconds = 0.0

    def record(
        self,
        requests: Sequence[GenerationRequest],
        outcomes: Sequence[JobOutcome],
        seconds: float,
        *,
        measurable: bool = True,
    ) -> None:
        if measurable and all(o.status is JobStatus.DONE for o in outcomes):
            if self.warm:
                self.speed.record(requests, seconds)
            self.warm = True
        made = [o.result for o in outcomes if o.result is not None]
        if made:  # mean seconds per image counts the batches that made images
            self.jobs_done += len(made)
            self.images_done += sum(result.request.image_count for result in made)
            self.device_seconds += seconds

    def status_fields(self) -> dict[str, Any]:
        """The counters, as `WorkerStatus` fields."""
        return {
            "jobs_done": self.jobs_done,
            "images_done": self.images_done,
            "mean_s_per_image": (
                self.device_seconds / self.images_done if self.images_done else None
            ),
        }
