"""The scheduler: one fair queue shared by the workers, caps, positions, ETAs and cancellation.

Jobs are dispatched round-robin across users (not first come, first served), so one user's ten
jobs cannot starve another's one. Each worker has a dispatcher task that pulls the next batch when
its device is free; pulling from one shared queue, rather than pushing into per-device queues,
keeps fairness global and lets whichever device frees first take the next job.

The scheduler knows nothing of Discord or the store: callers submit `Job`s and read `JobHandle`s
(fluxbot.serving.handle); the scheduler keeps its own dispatch state of each job in a
`DispatchRecord` (fluxbot.serving.dispatch). The queue's order is `FairQueue`'s
(fluxbot.serving.fair_queue). Every method is called on the event loop thread.

Styles: a batch holds one LoRA only (it is part of the batch key), and when several workers are
free, the next job's LoRA goes to one that already has it loaded, so LoRA loads stay rare; the
job is still the one fairness picks, only the device differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from fluxbot.core.errors import UserError
from fluxbot.core.requests import MAX_COUNT, GenerationRequest, JobStatus
from fluxbot.logs import job_line
from fluxbot.serving.dispatch import DispatchRecord
from fluxbot.serving.events import (
    FinishedEvent,
    JobEvent,
    PositionEvent,
    ProgressEvent,
    StartedEvent,
)
from fluxbot.serving.fair_queue import FairQueue
from fluxbot.serving.handle import JobHandle, QueuePlace
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.workers.base import Worker, WorkerState, WorkerStatus, describe_error

if TYPE_CHECKING:
    from fluxbot.config import Settings

log = logging.getLogger(__name__)

DEFER_S = 1.0  # longest a free worker waits for another to take a job whose LoRA it holds

SMALL_JOB_PIXELS = 512 * 512
"""Batching jobs together pays at 512x512 and below; at 1024x1024 the GPU is already saturated."""
ETA_REPORT_MIN_S = 1.0


class QueueFull(UserError):
    """A submit over a cap; `str()` is a sentence fit to show the user."""

    def __init__(self, *, scope: str, cap: int, waiting: int, user_waiting: int) -> None:
        self.scope = scope
        self.cap = cap
        self.waiting = waiting
        self.user_waiting = user_waiting
        if scope == "user":
            message = (
                f"You already have {user_waiting} job(s) waiting, and the limit is {cap} per "
                "person. Wait for one to finish, or cancel one."
            )
        else:
            message = (
                f"The queue is full: {waiting} job(s) are waiting, and the limit is {cap} "
                f"(you have {user_waiting} waiting). Try again in a few minutes."
            )
        super().__init__(message)


class SchedulerClosed(UserError):
    """The scheduler takes no new jobs (it is shutting down, or no device is left)."""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One line of the admin queue listing; running jobs have position 0."""

    job_id: str
    user_id: int
    position: int
    state: JobStatus
    device: str | None
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    workers: tuple[WorkerStatus, ...]
    queue: tuple[QueueEntry, ...]
    queued: int
    running: int
    paused: bool
    closing: bool


Listener = Callable[[JobEvent], None]


class Scheduler:
    """Fair dispatch of jobs to workers, with caps, positions/ETAs, cancellation and drain."""

    def __init__(
        self,
        workers: Sequence[Worker],
        *,
        user_queue_cap: int = 5,
        global_queue_cap: int = 200,
        batch_small_jobs: bool = False,
        max_batch_images: int = MAX_COUNT,
        small_job_pixels: int = SMALL_JOB_PIXELS,
        requeue_limit: int = 1,
    ) -> None:
        if not workers:
            raise ValueError("a scheduler needs at least one worker")
        self.workers = tuple(workers)
        self.user_queue_cap = user_queue_cap
        self.global_queue_cap = global_queue_cap
        self.batch_small_jobs = batch_small_jobs
        self.max_batch_images = max_batch_images
        self.small_job_pixels = small_job_pixels
        self.requeue_limit = requeue_limit
        self._queue = FairQueue()
        self._jobs: dict[str, DispatchRecord] = {}  # queued or running, by job id
        self._listeners: list[Listener] = []
        self._dispatchers: dict[Worker, asyncio.Task[None]] = {}
        self._wakes: dict[Worker, asyncio.Event] = {}
        # Workers whose dispatcher is ready for its next batch (see _defer_to).
        self._free: set[Worker] = set()
        self._finishing: set[asyncio.Task[None]] = set()
        # Running jobs' "last denoising step reached" signals (see _until_next_batch).
        self._last_steps: dict[str, asyncio.Event] = {}
        self._shutdown_handed_back: list[DispatchRecord] = []
        self._paused = False
        self._closing = False
        self._no_devices = False

    @classmethod
    def from_settings(cls, settings: Settings, workers: Sequence[Worker]) -> Scheduler:
        return cls(
            workers,
            user_queue_cap=settings.user_queue_cap,
            global_queue_cap=settings.global_queue_cap,
            batch_small_jobs=settings.batch_small_jobs,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker loading and its dispatcher; returns without waiting for loads."""
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            if worker in self._dispatchers:
                continue
            worker.start()
            self._wakes[worker] = asyncio.Event()
            self._dispatchers[worker] = loop.create_task(
                self._dispatch(worker), name=f"dispatch-{worker.device}"
            )

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop starting new batches (running ones finish); jobs can still be submitted."""
        self._paused = True
        log.info("dispatch paused")

    def resume(self) -> None:
        self._paused = False
        log.info("dispatch resumed")
        self._wake()

    async def shutdown(self, grace_s: float = 30.0, stop_wait_s: float = 10.0) -> list[Job]:
        """Stop taking jobs and drain; returns the jobs to resume later, running ones first.

        Queued jobs are handed back at once. Running ones get `grace_s` to finish; then they are
        interrupted and handed back too (waiting at most `stop_wait_s` more). Handed-back jobs
        end with a `QUEUED` outcome; handed-back running ones come back with `priority_front`.
        """
        if self._closing:
            return []  # already shut down (or shutting down): the first call reports the jobs
        self._closing = True
        self._wake()
        left = self._queue.drain()
        for job in left:
            self._complete(self._jobs[job.job_id], self._handed_back_outcome(job))
        pending = set(self._dispatchers.values())
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        if pending:
            for record in self._on_device():
                record.handed_back = True
                if record.worker is not None:
                    record.worker.cancel(record.job_id)
            _, pending = await asyncio.wait(pending, timeout=stop_wait_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for record in self._on_device():  # still on a device that did not stop in time
            record.handed_back = True
            self._complete(record, self._handed_back_outcome(record.job))
        if self._finishing:
            await asyncio.wait(self._finishing, timeout=stop_wait_s)
        for worker in self.workers:
            await worker.close()
        handed_back = [replace(r.job, priority_front=True) for r in self._shutdown_handed_back]
        log.info(
            "scheduler stopped: %d running job(s) and %d queued job(s) handed back",
            len(handed_back),
            len(left),
        )
        return handed_back + left

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, job: Job) -> JobHandle:
        """Queue a job; raises `QueueFull` over a cap, `SchedulerClosed` when not taking jobs.

        Jobs with `priority_front` (recovered after a restart or a lost worker) skip the caps.
        """
        if self._closing:
            raise SchedulerClosed("The bot is shutting down and takes no new jobs right now.")
        if self._no_devices:
            raise SchedulerClosed("No GPU is available to make images right now.")
        if job.job_id in self._jobs:
            raise ValueError(f"job {job.job_id} is already queued or running")
        if not job.priority_front:
            self.check_capacity(job.user_id)
        handle = JobHandle(job)
        self._jobs[job.job_id] = DispatchRecord(handle)
        self._queue.push(job)
        self._refresh_places()
        self._wake()
        return handle

    def check_capacity(self, user_id: int) -> None:
        """Raise `QueueFull` if a new job of `user_id` would go over a cap (nothing changes)."""
        user_waiting = self._queue.count_for(user_id)
        if user_waiting >= self.user_queue_cap:
            raise QueueFull(
                scope="user",
                cap=self.user_queue_cap,
                waiting=len(self._queue),
                user_waiting=user_waiting,
            )
        if len(self._queue) >= self.global_queue_cap:
            raise QueueFull(
                scope="global",
                cap=self.global_queue_cap,
                waiting=len(self._queue),
                user_waiting=user_waiting,
            )

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a queued or running job."""
        record = self._jobs.get(job_id)
        return None if record is None else record.handle

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (it leaves the queue) or a running one (it stops at its next step).

        Either way the job ends with a `CANCELLED` outcome. False if the job is unknown or
        already finishing.
        """
        record = self._jobs.get(job_id)
        if record is None or record.handle.done or record.finishing:
            return False
        if record.handle.status is JobStatus.QUEUED:
            if self._queue.remove(job_id) is None:
                return False
            self._complete(record, JobOutcome(job_id, JobStatus.CANCELLED))
            self._refresh_places()
            return True
        if record.worker is None:
            return False
        return record.worker.cancel(job_id)

    def place(self, job_id: str) -> QueuePlace | None:
        """A waiting job's position and ETA, computed now; None once it left the queue."""
        handle = self.handle(job_id)
        if handle is None or handle.status is not JobStatus.QUEUED:
            return None
        return self._plan()[0].get(job_id)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event of every job (on the loop); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def status(self) -> SchedulerStatus:
        """Workers and the queue, for the admin /gpu and /queue views."""
        places, depth = self._plan()
        workers = tuple(
            replace(worker.status(), queue_depth=depth.get(index, 0))
            for index, worker in enumerate(self.workers)
        )
        running = [
            QueueEntry(h.job_id, h.job.user_id, 0, h.status, h.device, None)
            for h in (record.handle for record in self._jobs.values())
            if h.status is JobStatus.RUNNING
        ]
        queued = [
            QueueEntry(
                job.job_id,
                job.user_id,
                places[job.job_id].position,
                JobStatus.QUEUED,
                None,
                places[job.job_id].eta_s,
            )
            for job in self._queue.order()
        ]
        return SchedulerStatus(
            workers=workers,
            queue=tuple(running + queued),
            queued=len(queued),
            running=len(running),
            paused=self._paused,
            closing=self._closing,
        )

    # -- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, worker: Worker) -> None:
        """One worker's loop: wait for its device and for work, take a batch, run it."""
        wake = self._wakes[worker]
        inflight: list[tuple[asyncio.Task[None], asyncio.Event]] = []
        deferred: str | None = None
        try:
            while not self._closing:
                if not await worker.wait_ready():
                    log.error("the worker on %s is out of service", worker.device)
                    break
                self._free.add(worker)
                while not self._closing and (self._paused or not self._queue):
                    wake.clear()
                    await wake.wait()
                if self._closing:
                    break
                holder = self._defer_to(worker, deferred)
                if holder is not None:
                    # Leave the next job to a free worker that has its LoRA loaded; wait for
                    # the queue to change (bounded, in case that worker never takes it).
                    deferred = self._queue.order()[0].job_id
                    wake.clear()
                    self._wakes[holder].set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), DEFER_S)
                    continue
                self._free.discard(worker)
                batch = self._take_batch()
                if self._queue:
                    self._wake()  # a worker that deferred to this one looks again
                last_step = asyncio.Event()
                task = asyncio.get_running_loop().create_task(
                    self._run_batch(worker, batch, last_step)
                )
                inflight.append((task, last_step))
                inflight = await self._until_next_batch(worker, inflight)
            if inflight:
                await asyncio.wait([task for task, _ in inflight])
        except asyncio.CancelledError:
            for task, _ in inflight:
                task.cancel()
            raise
        finally:
            self._free.discard(worker)
        del self._dispatchers[worker]
        if not self._dispatchers and not self._closing:
            self._lost_all_devices()

    async def _until_next_batch(
        self, worker: Worker, inflight: list[tuple[asyncio.Task[None], asyncio.Event]]
    ) -> list[tuple[asyncio.Task[None], asyncio.Event]]:
        """Wait until `worker` should get its next batch: when nothing runs there, or, for a
        worker that accepts a batch while busy, when the one batch it runs is on its last
        denoising step (its final step and VAE decode still keep the device busy, so the next
        batch is waiting there the moment this one ends, while it is taken from the fair
        queue as late as that allows). Returns the batches still in flight."""
        while True:
            inflight = [(task, last) for task, last in inflight if not task.done()]
            if not inflight:
                return inflight
            if worker.accepts_lookahead and len(inflight) == 1 and inflight[0][1].is_set():
                return inflight
            waits: set[asyncio.Future[Any]] = {task for task, _ in inflight}
            signal = None
            if worker.accepts_lookahead and len(inflight) == 1:
                signal = asyncio.ensure_future(inflight[0][1].wait())
                waits.add(signal)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if signal is not None:
                    signal.cancel()

    def _defer_to(self, worker: Worker, deferred: str | None) -> Worker | None:
        """Another free worker that has the next job's LoRA loaded, when `worker` has not
        (None: take the job here). A worker defers once per job, never twice."""
        head = self._queue.order()[0]
        lora = head.request.lora
        if lora is None or head.job_id == deferred or worker.holds_lora(lora):
            return None
        for other in self._free:
            if other is not worker and other.holds_lora(lora):
                return other
        return None

    def _take_batch(self) -> list[Job]:
        """The next job in round-robin order, plus compatible small ones when batching is on."""
        first = self._queue.pop_next()
        assert first is not None
        batch = [first]
        if not (self.batch_small_jobs and self._batchable(first.request)):
            return batch
        key = first.request.batch_key()
        images = first.request.image_count
        for job in self._queue.order():
            if images >= self.max_batch_images:
                break
            request = job.request
            fits = images + request.image_count <= self.max_batch_images
            if fits and self._batchable(request) and request.batch_key() == key:
                self._queue.take(job.job_id)
                batch.append(job)
                images += request.image_count
        return batch

    def _batchable(self, request: GenerationRequest) -> bool:
        return (
            request.animation is None
            and request.width * request.height <= self.small_job_pixels
            and request.image_count < self.max_batch_images
        )

    async def _run_batch(
        self, worker: Worker, batch: list[Job], last_step: asyncio.Event | None = None
    ) -> None:
        try:
            await self._execute_batch(worker, batch, last_step)
        except Exception:
            log.exception("dispatching to %s failed", worker.device)
        finally:
            for job in batch:
                self._last_steps.pop(job.job_id, None)

    async def _execute_batch(
        self, worker: Worker, batch: list[Job], last_step: asyncio.Event | None
    ) -> None:
        now = time.time()
        if last_step is not None:
            for job in batch:
                self._last_steps[job.job_id] = last_step
        for job in batch:
            record = self._jobs[job.job_id]
            record.dispatched(worker, now)
            self._emit(record.handle, StartedEvent(job.job_id, worker.device, len(batch)))
        self._refresh_places()
        try:
            outcomes = await worker.run(batch, self._on_worker_event)
        except Exception as exc:
            log.exception("the worker on %s lost a batch of %d job(s)", worker.device, len(batch))
            self._requeue_or_fail(batch, exc)
            return
        for outcome in outcomes:
            finished = self._jobs.get(outcome.job_id)
            if finished is None:
                continue
            if outcome.status is JobStatus.DONE:
                finished.finishing = True
                task = asyncio.get_running_loop().create_task(
                    self._finish(worker, finished, outcome)
                )
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
            else:
                self._complete(finished, outcome)
        self._refresh_places()

    async def _finish(self, worker: Worker, record: DispatchRecord, outcome: JobOutcome) -> None:
        try:
            outcome = await worker.finish(outcome)
        except Exception as exc:
            log.exception("finishing job %s failed", record.job_id)
            outcome.status = JobStatus.FAILED
            outcome.error = f"the images could not be prepared ({describe_error(exc)})"
        self._complete(record, outcome)

    def _requeue_or_fail(self, batch: Sequence[Job], exc: Exception) -> None:
        """A batch the worker never ran goes back to the front once; a second loss fails it."""
        for job in batch:
            record = self._jobs[job.job_id]
            if self._closing:
                record.handed_back = True
                self._complete(record, self._handed_back_outcome(job))
            elif record.requeues < self.requeue_limit:
                self._queue.push(record.requeued())
            else:
                message = f"the device was lost while running it ({describe_error(exc)})"
                self._complete(record, JobOutcome(job.job_id, JobStatus.FAILED, error=message))
        self._refresh_places()
        self._wake()

    def _lost_all_devices(self) -> None:
        """Every worker is out of service: fail what waits and refuse new jobs."""
        self._no_devices = True
        for job in self._queue.drain():
            outcome = JobOutcome(job.job_id, JobStatus.FAILED, error="no GPU is available")
            self._complete(self._jobs[job.job_id], outcome)

    # -- events and bookkeeping -----------------------------------------------------------------

    def _on_device(self) -> list[DispatchRecord]:
        """Jobs on a device now (not those already encoding)."""
        return [record for record in self._jobs.values() if record.on_device]

    def _on_worker_event(self, event: JobEvent) -> None:
        if isinstance(event, ProgressEvent) and event.step >= event.total:
            last_step = self._last_steps.get(event.job_id)
            if last_step is not None:
                last_step.set()
        handle = self.handle(event.job_id)
        if handle is not None and handle.status is JobStatus.RUNNING:
            self._emit(handle, event)

    def _emit(self, handle: JobHandle, event: JobEvent) -> None:
        handle.publish(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a job event listener failed")

    def _complete(self, record: DispatchRecord, outcome: JobOutcome) -> None:
        """Fill in the outcome's queue timings, log the job's line and publish its finish."""
        handle = record.handle
        if handle.done:
            return
        if record.handed_back and outcome.status is not JobStatus.DONE:
            outcome = self._handed_back_outcome(handle.job)
            self._shutdown_handed_back.append(record)
        now = time.time()
        created = handle.job.created
        outcome.timings.queued = max(0.0, (record.dispatched_at or now) - created)
        outcome.timings.total = max(0.0, now - created)
        outcome.device = outcome.device or (handle.device or "")
        self._jobs.pop(handle.job_id, None)
        if outcome.result is not None and outcome.status is JobStatus.DONE:
            outcome.result.timings = outcome.timings
            log.info("%s", job_line(handle.job_id, outcome.result))
        else:
            t = outcome.timings
            log.info(
                "job %s %s on %s: %s | queued %.2fs text %.3fs denoise %.3fs decode %.3fs "
                "encode %.3fs total %.2fs",
                handle.job_id,
                outcome.status,
                outcome.device or "no device",
                outcome.error or "-",
                t.queued,
                t.text_encode,
                t.denoise,
                t.decode,
                t.image_encode,
                t.total,
            )
        self._emit(handle, FinishedEvent(handle.job_id, outcome))

    def _handed_back_outcome(self, job: Job) -> JobOutcome:
        return JobOutcome(
            job.job_id,
            JobStatus.QUEUED,
            error="not finished: the bot is shutting down; the job stays queued",
        )

    def _plan(self) -> tuple[dict[str, QueuePlace], dict[int, int]]:
        """Simulate the queue on the workers: each job, in dispatch order, goes to the worker
        free first. Returns each job's place and how many queued jobs each worker gets."""
        live = [
            (index, worker)
            for index, worker in enumerate(self.workers)
            if worker.status().state not in (WorkerState.DEAD, WorkerState.CLOSED)
        ] or list(enumerate(self.workers))
        free_at = [worker.status().busy_remaining_s for _, worker in live]
        places: dict[str, QueuePlace] = {}
        depth: dict[int, int] = {}
        for position, job in enumerate(self._queue.order(), start=1):
            slot = min(range(len(live)), key=free_at.__getitem__)
            index, worker = live[slot]
            starts = free_at[slot]
            free_at[slot] = starts + worker.estimate_s(job.request)
            places[job.job_id] = QueuePlace(position, starts, free_at[slot], worker.device)
            depth[index] = depth.get(index, 0) + 1
        return places, depth

    def _refresh_places(self) -> None:
        """Recompute positions and ETAs; tell each waiting job whose place moved noticeably."""
        places, _ = self._plan()
        now = time.time()
        for job_id, place in places.items():
            handle = self._jobs[job_id].handle
            old = handle.moved_to(place)
            last = handle.last_position
            moved = last is None or last.position != place.position
            drift = last is not None and abs(now + place.eta_s - last.eta_at) >= max(
                ETA_REPORT_MIN_S, 0.1 * place.eta_s
            )
            if moved or drift or old is None:
                event = PositionEvent(job_id, place.position, place.eta_s, now + place.eta_s)
                self._emit(handle, event)

    def _wake(self) -> None:
        for wake in self._wakes.values():
            wake.set()
