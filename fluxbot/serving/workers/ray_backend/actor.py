"""The replica actor on a GPU host, and the messages it exchanges with the bot.

`ReplicaActor` is a plain class that `cluster.build_ray_workers` wraps with `ray.remote`; it runs
a `LocalWorker`, so a remote device has the local one's recovery, limits and encoding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from fluxbot.core.requests import JobStatus
from fluxbot.serving.events import ProgressEvent
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.workers.base import WorkerState, WorkerStatus, WorkerUnavailable

if TYPE_CHECKING:
    from fluxbot.config import Settings
    from fluxbot.serving.workers.local import LocalWorker

log = logging.getLogger(__name__)

# -- what travels between the bot and an actor ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """What an actor needs to build its replica: no secrets (never the Discord token).

    `device` is 'auto' (the actor's GPU when torch sees one, else the CPU, for clusters whose
    GPUs are fake resources), or an explicit torch device such as 'cpu' or 'cuda'.
    """

    label: str
    model: str
    device: str = "auto"
    timeout_s: float = 300.0
    memory_high: float = 0.85
    memory_critical: float = 0.95
    log_level: str = "INFO"

    @classmethod
    def from_settings(cls, settings: Settings, label: str, device: str = "auto") -> ReplicaConfig:
        return cls(
            label=label,
            model=settings.model,
            device=device,
            timeout_s=settings.job_timeout_s,
            memory_high=settings.memory_high,
            memory_critical=settings.memory_critical,
            log_level=settings.log_level,
        )


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """An actor's answer to `ready`: where it runs and whether its pipeline loaded."""

    label: str
    torch_device: str
    node_ip: str
    gpu_ids: tuple[str, ...]
    state: WorkerState


@dataclass(frozen=True, slots=True)
class DeviceFree:
    """The last item of a batch's stream: the device is free, these are the outcomes.

    Results carry no pixels (`images` is empty): done jobs' images come back encoded, from
    `ReplicaActor.finish`. `status` is the actor-side worker's, for its cleanup statistics.
    """

    outcomes: list[JobOutcome]
    status: WorkerStatus


def _without_pixels(outcome: JobOutcome, label: str) -> JobOutcome:
    """The outcome as it crosses the network: the images stay on the GPU host."""
    result = outcome.result
    if result is not None:
        result = replace(result, images=[], device=label)
        result.timings = outcome.timings
    return replace(outcome, result=result, device=label)


# -- the actor, on a GPU host ----------------------------------------------------------------


def resolve_torch_device(choice: str, gpu_ids: Sequence[Any]) -> str:
    """The torch device of an actor: Ray points CUDA_VISIBLE_DEVICES at its one GPU."""
    if choice != "auto":
        return choice
    import torch

    if gpu_ids and torch.cuda.is_available():
        return "cuda:0"
    if gpu_ids:
        log.warning("Ray gave this actor GPU %s but torch sees none; running on the CPU", gpu_ids)
    return "cpu"


class ReplicaActor:
    """Runs inside a Ray actor (async): a `LocalWorker` holding one pipeline on the actor's GPU.

    `run` is a streaming generator: progress events, then `DeviceFree` as soon as the device is
    done; encoding goes on in the actor while the next batch runs, and `finish` returns it.
    """

    def __init__(self, config: ReplicaConfig) -> None:
        logging.basicConfig(level=config.log_level, format="%(levelname)s %(name)s: %(message)s")
        self._config = config
        self._worker: LocalWorker | None = None
        self._torch_device = "cpu"
        self._encoding: dict[str, asyncio.Task[JobOutcome]] = {}

    def _build_worker(self) -> LocalWorker:
        import ray

        from fluxbot.devices.memory import CleanupPolicy, MemoryThresholds
        from fluxbot.engine.encoding import encode_result
        from fluxbot.serving.workers.device_memory import DeviceMemory
        from fluxbot.serving.workers.local import LocalWorker

        config = self._config
        self._torch_device = resolve_torch_device(config.device, ray.get_gpu_ids())
        thresholds = MemoryThresholds(high=config.memory_high, critical=config.memory_critical)
        return LocalWorker(
            config.label,
            partial(_load_runner, config.model, self._torch_device),
            encode=partial(encode_result, model=config.model),
            memory=DeviceMemory(self._torch_device, CleanupPolicy(thresholds)),
            timeout_s=config.timeout_s,
        )

    async def ready(self) -> ReplicaInfo:
        """Load the pipeline (once) and say where it runs; the bot waits on this."""
        import ray

        if self._worker is None:
            self._worker = self._build_worker()
        await self._worker.wait_ready()
        return ReplicaInfo(
            label=self._config.label,
            torch_device=self._torch_device,
            node_ip=ray.util.get_node_ip_address(),
            gpu_ids=tuple(str(i) for i in ray.get_gpu_ids()),
            state=self._worker.status().state,
        )

    async def run(self, batch: list[Job]) -> AsyncIterator[ProgressEvent | DeviceFree]:
        """One batch: its progress as it happens, then the outcomes (`DeviceFree`)."""
        worker = self._worker
        if worker is None:
            raise WorkerUnavailable(f"the worker {self._config.label} was never made ready")
        events: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()
        # The ignore below: Queue.put_nowait is the worker protocol's event sink.
        task = asyncio.create_task(worker.run(batch, events.put_nowait))  # type: ignore[arg-type]
        task.add_done_callback(lambda _: events.put_nowait(None))
        outcomes: list[JobOutcome] | None = None
        try:
            while (event := await events.get()) is not None:
                yield event
            outcomes = await task
        finally:
            # ray.cancel on the stream (CancelledError at an await, GeneratorExit at a yield):
            # interrupt the pipeline too, so the device is free for the next batch.
            if outcomes is None:
                for job in batch:
                    worker.cancel(job.job_id)
        for outcome in outcomes:
            if outcome.status is JobStatus.DONE:
                self._encoding[outcome.job_id] = asyncio.create_task(worker.finish(outcome))
        label = self._config.label
        yield DeviceFree([_without_pixels(o, label) for o in outcomes], worker.status())

    async def finish(self, job_id: str) -> JobOutcome | None:
        """A done job's encoded images (None if this actor does not know it: it restarted)."""
        task = self._encoding.pop(job_id, None)
        if task is None:
            return None
        return _without_pixels(await task, self._config.label)

    async def forget(self, job_id: str) -> None:
        """Drop a job's images: it was cancelled after it finished on the device."""
        task = self._encoding.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def cancel(self, job_id: str) -> bool:
        """Stop a running job at its next step (the pipeline's interrupt)."""
        return self._worker is not None and self._worker.cancel(job_id)


def _load_runner(model: str, torch_device: str) -> Any:
    """Build the replica on the actor's device thread (vendor switches first, like locally)."""
    from fluxbot.devices.discovery import discover_devices
    from fluxbot.devices.vendor import apply_vendor_settings
    from fluxbot.engine.pipeline import FluxRunner

    for info in discover_devices():
        if info.torch_device == torch_device:
            apply_vendor_settings(info)
    return FluxRunner.load(model, torch_device)
