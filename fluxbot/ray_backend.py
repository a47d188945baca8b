"""Workers on other hosts through Ray Core: one actor per GPU of the cluster, behind `Worker`.

Only this module imports ray, and only when the Ray backend is chosen, so single-host installs
never need it. Each actor (`ReplicaActor`) runs a `LocalWorker` on its GPU, so a remote device
behaves exactly like a local one: same OOM retry, failure isolation, time limit, memory cleanup
and PNG encoding, with the same outcomes and messages. The bot-side `RayWorker` streams each
batch's progress back (a Ray streaming generator), forwards cancels to the actor's pipeline
interrupt, and turns a lost actor or node into `WorkerUnavailable`, so the scheduler puts the
batch back at the front of the queue once; the worker rejoins when its actor is ready again.
Fairness, caps, positions and ETAs stay in the bot's scheduler: Ray only carries the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from fluxbot.config import ConfigError
from fluxbot.jobs import EventSink, Job, JobOutcome, ProgressEvent
from fluxbot.requests import GenerationRequest, JobStatus
from fluxbot.worker import (
    SpeedModel,
    Worker,
    WorkerState,
    WorkerStatus,
    WorkerUnavailable,
    describe_error,
)

if TYPE_CHECKING:
    from fluxbot.config import Settings
    from fluxbot.worker import LocalWorker

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
RAY_NAMESPACE = "fluxbot"
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
PROBE_TIMEOUT_S = 5.0


class RayBackendError(ConfigError):
    """The Ray backend cannot start (no ray, no cluster, no GPU); one line for the operator."""


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

        from fluxbot.images import encode_result
        from fluxbot.memory import CleanupPolicy, MemoryThresholds
        from fluxbot.worker import DeviceMemory, LocalWorker

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
    from fluxbot.gpu import apply_vendor_settings, discover_devices
    from fluxbot.pipeline import FluxRunner

    for info in discover_devices():
        if info.torch_device == torch_device:
            apply_vendor_settings(info)
    return FluxRunner.load(model, torch_device)


# -- the bot side ----------------------------------------------------------------------------


@dataclass(slots=True)
class _RemoteBatch:
    """The batch on the remote device now."""

    jobs: tuple[Job, ...]
    started: float
    estimate_s: float
    cancelled: set[str] = field(default_factory=set)

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(job.job_id for job in self.jobs)


class RayWorker(Worker):
    """One GPU of the Ray cluster, seen through one actor handle; called on the event loop.

    `spawn` creates the actor; it is called again only if the actor is gone for good (a
    restarting actor is waited for). With `owns_actor`, `close` kills the actor.
    Done outcomes' `result.images` is empty: their images arrive as `files` from `finish`.
    """

    def __init__(
        self,
        device: str,
        spawn: Callable[[], Any],
        *,
        actor: Any | None = None,
        owns_actor: bool = True,
        speed: SpeedModel | None = None,
    ) -> None:
        self.device = device
        self.actor = actor
        self.info: ReplicaInfo | None = None
        self.spawn = spawn
        self._owns_actor = owns_actor
        self._speed = speed or SpeedModel()
        self._state = WorkerState.LOADING
        self._connecting: asyncio.Task[None] | None = None
        self._current: _RemoteBatch | None = None
        self._stream: Any | None = None
        self._remote_status: WorkerStatus | None = None
        self._warm = False
        self._jobs_done = 0
        self._images_done = 0
        self._device_seconds = 0.0
        self._calls: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._connecting is None and self._state is not WorkerState.CLOSED:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        """Wait until the actor's pipeline is loaded; a restarting actor is waited for, and a
        dead one replaced, with growing pauses in between."""
        import ray.exceptions

        self._state = WorkerState.LOADING
        pause = RETRY_MIN_S
        while self._state is not WorkerState.CLOSED:
            if self.actor is None:
                self.actor = self.spawn()
            try:
                info: ReplicaInfo = await self.actor.ready.remote()
                break
            except ray.exceptions.ActorUnavailableError:
                pass  # restarting (after a crash, or its node came back): ask again
            except ray.exceptions.RayActorError as exc:
                log.warning("the Ray worker %s is gone (%s); starting a new one", self.device, exc)
                self.actor = None
            except Exception:
                log.exception("the Ray worker %s failed to start; it takes no jobs", self.device)
                self._state = WorkerState.DEAD
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
        else:
            return
        if self._state is WorkerState.CLOSED:
            return
        self.info = info
        if info.state is not WorkerState.IDLE:
            log.error(
                "the pipeline did not load on Ray worker %s (%s, %s); it takes no jobs",
                self.device,
                info.node_ip,
                info.torch_device,
            )
            self._state = WorkerState.DEAD
            return
        log.info(
            "Ray worker %s ready on %s (%s, GPU %s)",
            self.device,
            info.node_ip,
            info.torch_device,
            ",".join(info.gpu_ids) or "-",
        )
        self._warm = False
        self._state = WorkerState.IDLE

    async def wait_ready(self) -> bool:
        if self._connecting is None:
            self.start()
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
        return self._state in (WorkerState.IDLE, WorkerState.BUSY)

    def _lost(self, exc: BaseException) -> None:
        """The actor or its node died: out of the rotation until it is ready again."""
        log.warning("lost the Ray worker %s (%s); waiting for it to rejoin", self.device, exc)
        if self._state is WorkerState.CLOSED:
            return
        self._state = WorkerState.LOADING
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def close(self) -> None:
        import ray

        self._state = WorkerState.CLOSED
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                ray.cancel(self._stream)
        if self._owns_actor and self.actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(self.actor)

    # -- running --------------------------------------------------------------------------------

    async def run(self, batch: Sequence[Job], events: EventSink) -> list[JobOutcome]:
        import ray
        import ray.exceptions

        if not await self.wait_ready() or self.actor is None:
            raise WorkerUnavailable(f"the worker on {self.device} is {self._state}")
        actor = self.actor
        running = _RemoteBatch(
            jobs=tuple(batch),
            started=time.monotonic(),
            estimate_s=sum(self.estimate_s(job.request) for job in batch),
        )
        self._current = running
        self._state = WorkerState.BUSY
        free: DeviceFree | None = None
        stream = actor.run.options(num_returns="streaming").remote(list(batch))
        self._stream = stream
        try:
            async for ref in stream:
                item = await ref
                if isinstance(item, DeviceFree):
                    free = item
                elif self._current is running and item.job_id not in running.cancelled:
                    events(item)
        except ray.exceptions.RayActorError as exc:
            self._current = None
            self._lost(exc)
            raise WorkerUnavailable(
                f"the Ray worker {self.device} stopped ({type(exc).__name__})"
            ) from exc
        except asyncio.CancelledError:
            ray.cancel(stream)
            raise
        except WorkerUnavailable as exc:  # the actor's pipeline is out of service
            self._state = WorkerState.DEAD
            raise WorkerUnavailable(f"the Ray worker {self.device}: {exc}") from exc
        finally:
            self._stream = None
            self._current = None
            if self._state is WorkerState.BUSY:
                self._state = WorkerState.IDLE
        if free is None:
            raise WorkerUnavailable(f"the Ray worker {self.device} ended a batch without outcomes")
        seconds = time.monotonic() - running.started
        self._remote_status = free.status
        outcomes = [self._settle(running, outcome) for outcome in free.outcomes]
        self._learn(batch, outcomes, seconds)
        return outcomes

    def _settle(self, running: _RemoteBatch, outcome: JobOutcome) -> JobOutcome:
        """A job cancelled here while its result was already on the way stays cancelled."""
        if outcome.job_id in running.cancelled and outcome.status is not JobStatus.CANCELLED:
            self._call(lambda actor: actor.forget.remote(outcome.job_id))
            return JobOutcome(outcome.job_id, JobStatus.CANCELLED, device=self.device)
        return outcome

    def _learn(self, batch: Sequence[Job], outcomes: Sequence[JobOutcome], seconds: float) -> None:
        """Speed and counters, as `LocalWorker` keeps them (the first batch is warm-up)."""
        if all(o.status is JobStatus.DONE for o in outcomes):
            if self._warm:
                self._speed.record([job.request for job in batch], seconds)
            self._warm = True
        made = [o for o in outcomes if o.result is not None]
        if made:
            self._jobs_done += len(made)
            self._images_done += sum(o.result.request.image_count for o in made if o.result)
            self._device_seconds += seconds

    async def finish(self, outcome: JobOutcome) -> JobOutcome:
        import ray.exceptions

        if outcome.status is not JobStatus.DONE or self.actor is None:
            return outcome
        try:
            encoded: JobOutcome | None = await self.actor.finish.remote(outcome.job_id)
        except ray.exceptions.RayActorError as exc:
            log.warning("lost the images of job %s on %s: %s", outcome.job_id, self.device, exc)
            encoded = None
        if encoded is None:
            raise WorkerUnavailable(
                f"the Ray worker {self.device} stopped before sending the images"
            )
        outcome.files = encoded.files
        outcome.status = encoded.status
        outcome.error = encoded.error
        outcome.timings.image_encode = encoded.timings.image_encode
        return outcome

    def cancel(self, job_id: str) -> bool:
        running = self._current
        if running is None or job_id not in running.job_ids:
            return False
        running.cancelled.add(job_id)
        self._call(lambda actor: actor.cancel.remote(job_id))
        return True

    def _call(self, send: Callable[[Any], Any]) -> None:
        """Fire an actor call from sync code; its failure (a lost actor) is only logged."""
        actor = self.actor
        if actor is None:
            return

        async def call() -> None:
            try:
                await send(actor)
            except Exception as exc:
                log.warning("a call to the Ray worker %s failed: %s", self.device, exc)

        task = asyncio.get_running_loop().create_task(call())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def estimate_s(self, request: GenerationRequest) -> float:
        return self._speed.estimate(request)

    def status(self) -> WorkerStatus:
        running = self._current
        remaining = 0.0
        if running is not None:
            remaining = max(0.0, running.estimate_s - (time.monotonic() - running.started))
        remote = self._remote_status
        return WorkerStatus(
            device=self.device,
            state=self._state,
            current_job_ids=running.job_ids if running else (),
            jobs_done=self._jobs_done,
            images_done=self._images_done,
            mean_s_per_image=(
                self._device_seconds / self._images_done if self._images_done else None
            ),
            last_cleanup_s=remote.last_cleanup_s if remote else None,
            cleanup_total_s=remote.cleanup_total_s if remote else 0.0,
            cleanups=remote.cleanups if remote else 0,
            busy_remaining_s=remaining,
        )


# -- the cluster -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaSlot:
    """One GPU of one node: where an actor goes, and the name the bot shows for it."""

    node_id: str
    node_ip: str
    index: int
    label: str


def plan_replicas(nodes: Sequence[dict[str, Any]]) -> list[ReplicaSlot]:
    """One slot per GPU of every live node, interleaved across nodes (host A's first GPU, host
    B's first, then the second ones), so ties in the scheduler spread work over the hosts."""
    per_node: list[list[ReplicaSlot]] = []
    seen_ips: set[str] = set()
    for node in nodes:
        gpus = int(node.get("Resources", {}).get("GPU", 0))
        if not node.get("Alive", False) or gpus <= 0:
            continue
        ip = str(node.get("NodeManagerAddress", "?"))
        node_id = str(node["NodeID"])
        host = ip if ip not in seen_ips else f"{ip}~{node_id[:6]}"
        seen_ips.add(ip)
        per_node.append([ReplicaSlot(node_id, ip, k, f"ray:{host}/gpu{k}") for k in range(gpus)])
    longest = max((len(slots) for slots in per_node), default=0)
    return [slots[k] for k in range(longest) for slots in per_node if k < len(slots)]


def import_ray() -> Any:
    """ray, or a `RayBackendError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayBackendError(
            "FLUXBOT_BACKEND=ray needs Ray, which is not installed: run "
            f"`{RAY_INSTALL_HINT}` (same Python and Ray versions on every host)"
        ) from None
    return ray


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast on an explicit 'HOST:PORT' nobody answers on: `ray.init` itself retries an
    unreachable address for minutes. ('auto' finds the cluster this host belongs to.)"""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayBackendError(
            f"cannot reach the Ray cluster at FLUXBOT_RAY_ADDRESS={address!r} "
            f"({describe_error(exc)}); is the head up (`ray start --head`), and the port open?"
        ) from None


def connect(address: str) -> None:
    """Join the cluster at `address` ('auto', or 'HEAD:6379' when this host is a node), once.

    The bot's host must be a node of the cluster (the head, ideally): Ray Client (`ray://`)
    does not support the streaming generators that carry progress back.
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    if address.startswith("ray://"):
        raise RayBackendError(
            f"FLUXBOT_RAY_ADDRESS={address!r} is not supported: Ray Client (ray://) cannot carry "
            "the streamed progress fluxbot uses; run the bot on the head node (address 'auto') "
            "or join its host to the cluster (`ray start --address=HEAD:6379`)"
        )
    probe(address)
    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, log_to_driver=True)
    except Exception as exc:
        raise RayBackendError(
            f"cannot reach the Ray cluster at FLUXBOT_RAY_ADDRESS={address!r} "
            f"({describe_error(exc)}); start it first with `ray start --head` on this host"
        ) from None


def spawn_replica(actor_class: Any, config: ReplicaConfig, slot: ReplicaSlot) -> Any:
    """Create one replica actor on `slot`'s node (soft: a restart may move to a free GPU)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return actor_class.options(
        num_gpus=1,
        max_restarts=-1,
        max_task_retries=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=True),
    ).remote(config)


def build_ray_workers(settings: Settings, *, device: str = "auto") -> list[Worker]:
    """Connect to the cluster and start one replica actor per GPU on every host.

    Actors start loading at once; `RayWorker.wait_ready` waits for them. Raises
    `RayBackendError` when ray is missing, the cluster is unreachable or has no GPU.
    """
    ray = import_ray()
    connect(settings.ray_address)
    slots = plan_replicas(ray.nodes())
    if not slots:
        raise RayBackendError(
            f"the Ray cluster at FLUXBOT_RAY_ADDRESS={settings.ray_address!r} has no GPU: "
            "join GPU hosts with `ray start --address=HEAD:6379`"
        )
    actor_class = ray.remote(ReplicaActor)
    workers: list[Worker] = []
    for slot in slots:
        config = ReplicaConfig.from_settings(settings, slot.label, device)
        spawn = partial(spawn_replica, actor_class, config, slot)
        workers.append(RayWorker(slot.label, spawn, actor=spawn()))
    hosts = {slot.node_id for slot in slots}
    log.info("Ray backend: %d GPU worker(s) on %d host(s)", len(workers), len(hosts))
    return workers
