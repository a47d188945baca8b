"""What the scheduler talks to: the `Worker` interface, its state and status, and the protocols a
worker needs of a pipeline replica (`Runner`) and of the memory policy (`MemoryHooks`).

`LocalWorker` (fluxbot.serving.workers.local) runs a replica in this process; `RayWorker`
(fluxbot.serving.workers.ray_backend) one on another host, so the scheduler never changes.
A run has two stages: `run` keeps the device busy (generation, with progress events), `finish`
encodes the images off the device, so the device takes its next batch at once.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from fluxbot.core.requests import GenerationRequest, GenerationResult
from fluxbot.core.styles import LoraSpec
from fluxbot.serving.events import EventSink
from fluxbot.serving.job import Job, JobOutcome

if TYPE_CHECKING:
    from fluxbot.engine.pipeline import StepProgress

Encoder = Callable[[GenerationResult], list[Any]]
"""Turns a result's images into files (bytes or `images.EncodedImage`); runs off the device."""

MAX_ERROR_CHARS = 200


class Runner(Protocol):
    """What a worker needs of a pipeline replica (fluxbot.engine.pipeline.FluxRunner is one)."""

    device: str

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_step: Callable[[StepProgress], None] | None = None,
        cancel: threading.Event | None = None,
        lighter: Any | None = None,
        want_preview: bool = False,
    ) -> list[GenerationResult]: ...


class MemoryHooks(Protocol):
    """The memory policy as the worker uses it; every method runs on the device thread."""

    def should_clean(self, jobs_since_clean: int) -> bool: ...

    def cleanup(self) -> float:
        """Free cached memory; returns the seconds it took."""
        ...

    def is_out_of_memory(self, exc: BaseException) -> bool: ...

    def lighter(self, requests: Sequence[GenerationRequest]) -> Any:
        """The settings (vae_tiling, vae_slicing, split_batch) for the one retry after an OOM."""
        ...


class WorkerUnavailable(Exception):
    """The worker cannot run anything (its pipeline failed to load, or it was closed)."""


class WorkerState(StrEnum):
    LOADING = "loading"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker as the admin /gpu view shows it. `queue_depth` is filled in by the scheduler:
    the queued jobs its plan expects this worker to run."""

    device: str
    state: WorkerState
    current_job_ids: tuple[str, ...]
    jobs_done: int
    images_done: int
    mean_s_per_image: float | None
    last_cleanup_s: float | None
    cleanup_total_s: float
    cleanups: int
    busy_remaining_s: float
    queue_depth: int = 0
    profile: str | None = None  # "memory/speed" of the replica once loaded
    loras: str | None = None  # the LoRAs the replica holds and the memory they take

    @property
    def current_job_id(self) -> str | None:
        return self.current_job_ids[0] if self.current_job_ids else None

    @property
    def busy(self) -> bool:
        return self.state is WorkerState.BUSY


class Worker(ABC):
    """A device the scheduler can hand batches to; all methods are called on the event loop."""

    device: str
    _state: WorkerState
    _startup: asyncio.Task[None] | None = None  # what `start` set going (load, connect)
    # Whether `run` may be called again while a batch runs: the new batch then waits on the
    # device and starts the moment the one ahead ends (the scheduler hands it over during the
    # running batch's last step, so the device never waits for the scheduler).
    accepts_lookahead: bool = False

    @abstractmethod
    def start(self) -> None:
        """Begin loading the pipeline in the background (call with the event loop running)."""

    async def wait_ready(self) -> bool:
        """Wait until the device can take a batch; False if it never will (dead or closed)."""
        if self._startup is None:
            self.start()
        if self._startup is not None:
            await asyncio.shield(self._startup)
        return self._state in (WorkerState.IDLE, WorkerState.BUSY)

    @abstractmethod
    async def run(self, batch: Sequence[Job], events: EventSink) -> list[JobOutcome]:
        """Generate a batch of compatible jobs; returns once the device is free again.

        One outcome per job, in order. Done outcomes still need `finish`. Progress goes to
        `events` on the loop. Raises `WorkerUnavailable` (or another error) only when the batch
        was not run, so the scheduler may requeue it.
        """

    @abstractmethod
    async def finish(self, outcome: JobOutcome) -> JobOutcome:
        """Encode a done outcome's images off the device; the outcome may turn failed."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Stop a running job at its next step; False if it is not running here."""

    @abstractmethod
    def estimate_s(self, request: GenerationRequest) -> float:
        """Seconds this device is expected to spend generating `request`."""

    @abstractmethod
    def status(self) -> WorkerStatus: ...

    def holds_lora(self, lora: LoraSpec) -> bool:
        """Whether the replica has this LoRA loaded (a job with it starts without a load);
        the scheduler prefers such a worker when several are free."""
        return False

    @abstractmethod
    async def close(self) -> None:
        """Release the device; the scheduler has already stopped giving it work."""


def describe_error(exc: BaseException) -> str:
    """One clean line naming the error: its type and first line, never a traceback."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip()[:MAX_ERROR_CHARS] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
