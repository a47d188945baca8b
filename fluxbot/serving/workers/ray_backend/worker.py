"""`RayWorker`: one remote GPU behind the scheduler's `Worker` interface, on the bot's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fluxbot.core.requests import GenerationRequest, JobStatus
from fluxbot.serving.events import EventSink
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.workers.base import Worker, WorkerState, WorkerStatus, WorkerUnavailable
from fluxbot.serving.workers.eta import BatchTally, SpeedModel
from fluxbot.serving.workers.ray_backend.actor import DeviceFree, ReplicaInfo

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0


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
        self._tally = BatchTally(speed)
        self._state = WorkerState.LOADING
        self._startup: asyncio.Task[None] | None = None
        self._current: _RemoteBatch | None = None
        self._stream: Any | None = None
        self._remote_status: WorkerStatus | None = None
        self._calls: set[asyncio.Task[Any]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._startup is None and self._state is not WorkerState.CLOSED:
            self._startup = asyncio.get_running_loop().create_task(self._connect())

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
        self._tally.warm = False
        self._state = WorkerState.IDLE

    def _lost(self, exc: BaseException) -> None:
        """The actor or its node died: out of the rotation until it is ready again."""
        log.warning("lost the Ray worker %s (%s); waiting for it to rejoin", self.device, exc)
        if self._state is WorkerState.CLOSED:
            return
        self._state = WorkerState.LOADING
        self._startup = asyncio.get_running_loop().create_task(self._connect())

    async def close(self) -> None:
        import ray

        self._state = WorkerState.CLOSED
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
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
            # The bot gave up on the batch (shutdown past its grace): stop the stream, and
            # interrupt the pipeline explicitly too, as a cancelled stream may leave the actor's
            # generator suspended rather than closed.
            for job in batch:
                self._call(partial(_cancel_remote, job_id=job.job_id))
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
        self._tally.record([job.request for job in batch], outcomes, seconds)
        return outcomes

    def _settle(self, running: _RemoteBatch, outcome: JobOutcome) -> JobOutcome:
        """A job cancelled here while its result was already on the way stays cancelled."""
        if outcome.job_id in running.cancelled and outcome.status is not JobStatus.CANCELLED:
            self._call(lambda actor: actor.forget.remote(outcome.job_id))
            return JobOutcome(outcome.job_id, JobStatus.CANCELLED, device=self.device)
        return outcome

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
        return self._tally.speed.estimate(request)

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
            **self._tally.status_fields(),
            last_cleanup_s=remote.last_cleanup_s if remote else None,
            cleanup_total_s=remote.cleanup_total_s if remote else 0.0,
            cleanups=remote.cleanups if remote else 0,
            busy_remaining_s=remaining,
        )


def _cancel_remote(actor: Any, job_id: str) -> Any:
    return actor.cancel.remote(job_id)
