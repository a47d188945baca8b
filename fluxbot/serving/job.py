"""A job as the scheduler and the workers see it, and how it ended. Nothing here knows about
Discord or the store (the store's row for a job is `fluxbot.store.models.JobRow`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fluxbot.core.requests import GenerationRequest, GenerationResult, JobStatus, StageTimings


@dataclass(frozen=True, slots=True)
class Job:
    """One user's request, as the scheduler queues it.

    `created` is wall-clock epoch seconds (a job recovered from the store keeps its own), and
    `priority_front` puts a recovered or requeued job ahead of the round-robin once.
    """

    job_id: str
    user_id: int
    request: GenerationRequest
    created: float = field(default_factory=time.time)
    priority_front: bool = False
    want_preview: bool = False


@dataclass(slots=True)
class JobOutcome:
    """How a job ended. `files` holds what the worker's encoder made of the images.

    The encoder is injected (the bot passes one built on fluxbot.engine.encoding), so the element
    type is whatever it returns, typically `EncodedImage` or bytes.
    """

    job_id: str
    status: JobStatus
    result: GenerationResult | None = None
    files: list[Any] = field(default_factory=list)
    error: str | None = None
    device: str = ""
    timings: StageTimings = field(default_factory=StageTimings)

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.DONE
