"""`LocalWorker`: a pipeline replica in this process on one device, driven by exactly one thread.

Generation runs on its `DeviceThread`; PNG encoding on a small pool, so the device takes its next
batch at once. An OOM is retried once lighter, a failing job in a shared batch is isolated, a
hung job is stopped and its thread replaced with a fresh replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxbot.core.requests import GenerationRequest, GenerationResult, JobStatus
from fluxbot.core.styles import LoraSpec
from fluxbot.devices.capture_gate import gate_for
from fluxbot.serving.events import EventSink, ProgressEvent
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.workers.base import (
    Encoder,
    MemoryHooks,
    Runner,
    Worker,
    WorkerState,
    WorkerStatus,
    WorkerUnavailable,
    describe_error,
)
from fluxbot.serving.workers.device_memory import DeviceMemory
from fluxbot.serving.workers.device_thread import DeviceThread
from fluxbot.serving.workers.eta import BatchTally, SpeedModel

if TYPE_CHECKING:
    from fluxbot.config import Settings
    from fluxbot.engine.pipeline import StepProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one job of a batch has no result."""

    status: JobStatus
    message: str


@dataclass(slots=True, eq=False)  # compared by identity: each is one hand-over
class _Running:
    """A batch handed to the device thread: waiting behind the one ahead, then on the device."""

    jobs: tuple[Job, ...]
    cancel: threading.Event
    estimate_s: float
    started: float | None = None  # monotonic time the device thread began it
    call: Future[Any] | None = None  # the device-thread call, cancelled if it never started
    cancelled: set[str] = field(default_factory=set)
    timed_out: bool = False
    retried: bool = False

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(job.job_id for job in self.jobs)


class LocalWorker(Worker):
    """A pipeline replica in this process, on one device, driven by one `DeviceThread`.

    Hung jobs: after `timeout_s` the batch's cancel event is set; a pipeline stops at its next
    step. If the thread has still not returned `hang_grace_s` later, its jobs fail, the thread
    is abandoned (it is a daemon; it exits if the call ever returns) and a fresh thread builds a
    fresh replica with `runner_factory`. A stuck replica is never called again, so the rule "one
    thread per pipeline" holds; the price is a reload, and on a GPU the stuck replica's memory
    stays held until its call returns.
    """

    def __init__(
        self,
        device: str,
        runner_factory: Callable[[], Runner],
        *,
        encode: Encoder | None = None,
        memory: MemoryHooks | None = None,
        timeout_s: float = 300.0,
        hang_grace_s: float = 10.0,
        speed: SpeedModel | None = None,
        encode_threads: int = 2,
    ) -> None:
        self.device = device
        self.timeout_s = timeout_s
        self.hang_grace_s = hang_grace_s
        self._factory = runner_factory
        self._encode = encode
        self._memory: MemoryHooks = memory or DeviceMemory(device)
        self._tally = BatchTally(speed)
        self._encode_pool = ThreadPoolExecutor(
            encode_threads, thread_name_prefix=f"encode-{device}"
        )
        self._state = WorkerState.LOADING
        self._thread: DeviceThread | None = None
        self._runner: Runner | None = None
        self._startup: asyncio.Task[None] | None = None
        self._current: _Running | None = None  # on the device now
        self._inflight: list[_Running] = []  # handed to the device thread, in order
        self._threads_started = 0
        # Written on the device thread, read on the loop: plain numbers, replaced whole.
        self._jobs_since_clean = 0
        self._last_cleanup_s: float | None = None
        self._cleanup_total_s = 0.0
        self._cleanups = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        device: str,
        runner_factory: Callable[[], Runner],
        *,
        encode: Encoder | None = None,
        memory: MemoryHooks | None = None,
    ) -> LocalWorker:
        return cls(
            device,
            runner_factory,
            encode=encode,
            memory=memory or DeviceMemory.from_settings(settings, device),
            timeout_s=settings.job_timeout_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._startup is None and self._state is not WorkerState.CLOSED:
            self._startup = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        self._state = WorkerState.LOADING
        self._threads_started += 1
        thread = DeviceThread(
            f"device-{self.device}-{self._threads_started}", gate=gate_for(self.device)
        )
        self._thread = thread
        try:
            runner = await asyncio.wrap_future(thread.submit(self._factory))
        except Exception:
            log.exception(
                "could not load the pipeline on %s; this device takes no jobs", self.device
            )
            thread.shutdown()
            self._state = WorkerState.DEAD
            return
        if self._state is WorkerState.CLOSED:
            thread.shutdown()
            return
        self._runner = runner
        self._tally.warm = False
        self._state = WorkerState.IDLE

    async def close(self) -> None:
        self._state = WorkerState.CLOSED
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        if self._thread is not None:
            self._thread.shutdown()
        self._encode_pool.shutdown(wait=False, cancel_futures=True)
        stop_compiling = getattr(self._runner, "close", None)
        if callable(stop_compiling):
            stop_compiling()  # the background compile thread, if any
        self._runner = None  # a call still on the device thread keeps its own reference

    # -- running --------------------------------------------------------------------------------

    accepts_lookahead = True

    async def run(self, batch: Sequence[Job], events: EventSink) -> list[JobOutcome]:
        if not await self.wait_ready() or self._runner is None or self._thread is None:
            raise WorkerUnavailable(f"the worker on {self.device} is {self._state}")
        runner, thread = self._runner, self._thread
        running = _Running(
            jobs=tuple(batch),
            cancel=threading.Event(),
            estimate_s=sum(self.estimate_s(job.request) for job in batch),
        )
        loop = asyncio.get_running_loop()
        on_device: asyncio.Future[None] = loop.create_future()

        def began() -> None:  # on the device thread, as the batch starts
            running.started = time.monotonic()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self._on_device, running, on_device)

        def on_step(progress: StepProgress) -> None:  # on the device thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._forward_progress, running, progress, events)

        requests = [job.request for job in batch]
        want_preview = any(job.want_preview for job in batch)
        running.call = thread.submit(
            lambda: self._device_call(
                runner, thread, requests, running, on_step, want_preview, began
            )
        )
        waiting = asyncio.wrap_future(running.call)
        waiting.add_done_callback(_consume_exception)
        self._inflight.append(running)
        try:
            # Behind another batch, this one waits for the device; its time limit starts then.
            await asyncio.wait({on_device, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.cancelled():
                raise WorkerUnavailable(f"the device thread of {self.device} was replaced")
            try:
                results = await asyncio.wait_for(asyncio.shield(waiting), self.timeout_s)
            except TimeoutError:
                results = await self._stop_overdue(running, waiting)
        finally:
            self._inflight.remove(running)
            if self._current is running:
                self._current = None
            if self._current is None and self._state is WorkerState.BUSY:
                self._state = WorkerState.IDLE
        seconds = time.monotonic() - (running.started or time.monotonic())
        outcomes = [self._outcome(running, job, results, i) for i, job in enumerate(batch)]
        # A batch retried lighter after an OOM would skew the ETAs.
        self._tally.record(requests, outcomes, seconds, measurable=not running.retried)
        return outcomes

    def _on_device(self, running: _Running, on_device: asyncio.Future[None]) -> None:
        """On the loop, first of the batch's callbacks: it is the device's batch from now."""
        if running in self._inflight:
            self._current = running
            if self._state is WorkerState.IDLE:
                self._state = WorkerState.BUSY
        if not on_device.done():
            on_device.set_result(None)

    async def finish(self, outcome: JobOutcome) -> JobOutcome:
        if outcome.status is not JobStatus.DONE or outcome.result is None or self._encode is None:
            return outcome
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            outcome.files = await loop.run_in_executor(
                self._encode_pool, self._encode, outcome.result
            )
        except Exception as exc:
            log.exception("encoding the images of job %s failed", outcome.job_id)
            outcome.status = JobStatus.FAILED
            outcome.error = f"the images could not be encoded ({describe_error(exc)})"
        outcome.timings.image_encode = time.perf_counter() - started
        return outcome

    def cancel(self, job_id: str) -> bool:
        running = next((r for r in self._inflight if job_id in r.job_ids), None)
        if running is None:
            return False
        running.cancelled.add(job_id)
        if running.cancelled >= set(running.job_ids):
            running.cancel.set()  # the last job of the batch: stop the pipeline
        return True

    def estimate_s(self, request: GenerationRequest) -> float:
        return self._tally.speed.estimate(request)

    def _profile_label(self) -> str | None:
        profiles = getattr(self._runner, "profiles", None)
        if not profiles:
            return None
        label = "/".join(str(p) for p in profiles)
        compiled = getattr(self._runner, "compiled", None)
        if compiled is not None and compiled.busy():
            # Jobs run eagerly meanwhile; each shape swaps in as it is built.
            label += f" (compiling, {compiled.pending()} shape(s) queued)"
        return label

    def holds_lora(self, lora: LoraSpec) -> bool:
        loras = getattr(self._runner, "loras", None)
        return loras is not None and lora.source in loras.loaded_sources

    def _loras_label(self) -> str | None:
        loras = getattr(self._runner, "loras", None)
        return loras.summary if loras is not None else None

    def status(self) -> WorkerStatus:
        running = self._current
        remaining = 0.0
        if running is not None and running.started is not None:
            remaining = max(0.0, running.estimate_s - (time.monotonic() - running.started))
        remaining += sum(r.estimate_s for r in self._inflight if r.started is None)
        return WorkerStatus(
            device=self.device,
            state=self._state,
            current_job_ids=running.job_ids if running else (),
            **self._tally.status_fields(),
            last_cleanup_s=self._last_cleanup_s,
            cleanup_total_s=self._cleanup_total_s,
            cleanups=self._cleanups,
            busy_remaining_s=remaining,
            profile=self._profile_label(),
            loras=self._loras_label(),
        )

    # -- on the loop ----------------------------------------------------------------------------

    def _forward_progress(
        self, running: _Running, progress: StepProgress, events: EventSink
    ) -> None:
        if self._current is not running:  # a late step of a batch already given up on
            return
        for index, job in enumerate(running.jobs):
            if job.job_id in running.cancelled:
                continue
            # The preview shows the batch's first image: it belongs to the first job only.
            preview = progress.preview if index == 0 else None
            events(ProgressEvent(job.job_id, progress.step, progress.total, preview))

    async def _stop_overdue(
        self, running: _Running, waiting: asyncio.Future[list[GenerationResult | _Failure]]
    ) -> list[GenerationResult | _Failure] | None:
        """Past the time limit: interrupt, and if the thread does not come back, replace it."""
        running.timed_out = True
        running.cancel.set()
        log.warning(
            "job(s) %s on %s passed the %g s limit; interrupting",
            ", ".join(running.job_ids),
            self.device,
            self.timeout_s,
        )
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), self.hang_grace_s)
        except TimeoutError:
            pass
        log.error(
            "job(s) %s on %s did not stop %g s after the interrupt; abandoning the device thread "
            "and loading a fresh pipeline",
            ", ".join(running.job_ids),
            self.device,
            self.hang_grace_s,
        )
        if self._thread is not None:
            self._thread.shutdown()
        for queued in self._inflight:  # behind the stuck batch: they go back to the queue
            if queued.started is None and queued.call is not None:
                queued.call.cancel()
        self._thread = None
        self._runner = None
        self._state = WorkerState.LOADING
        self._startup = asyncio.get_running_loop().create_task(self._load())
        return None

    def _outcome(
        self,
        running: _Running,
        job: Job,
        results: list[GenerationResult | _Failure] | None,
        index: int,
    ) -> JobOutcome:
        item = results[index] if results is not None else None
        if job.job_id in running.cancelled:
            return JobOutcome(job.job_id, JobStatus.CANCELLED, device=self.device)
        if isinstance(item, GenerationResult):
            return JobOutcome(
                job.job_id,
                JobStatus.DONE,
                result=item,
                device=self.device,
                timings=item.timings,
            )
        if running.timed_out:
            message = f"it took longer than the {self.timeout_s:g} s limit and was stopped"
            return JobOutcome(job.job_id, JobStatus.FAILED, error=message, device=self.device)
        assert item is not None
        return JobOutcome(job.job_id, item.status, error=item.message, device=self.device)

    # -- on the device thread -------------------------------------------------------------------

    def _device_call(
        self,
        runner: Runner,
        thread: DeviceThread,
        requests: Sequence[GenerationRequest],
        running: _Running,
        on_step: Callable[[StepProgress], None],
        want_preview: bool,
        began: Callable[[], None],
    ) -> list[GenerationResult | _Failure]:
        """One batch on the device thread, then the between-batches cleanup check (here, so it
        runs before the batch waiting behind this one, and never on an abandoned thread)."""
        began()
        results = self._generate_guarded(runner, requests, running, on_step, want_preview)
        if self._thread is thread:
            self._after_batch(len(requests))
        return results

    def _generate_guarded(
        self,
        runner: Runner,
        requests: Sequence[GenerationRequest],
        running: _Running,
        on_step: Callable[[StepProgress], None],
        want_preview: bool,
    ) -> list[GenerationResult | _Failure]:
        """`_generate`; an error in the recovery itself (a failing cleanup) fails the jobs."""
        try:
            return self._generate(runner, requests, running, on_step, want_preview)
        except Exception as exc:
            log.exception("recovery failed on %s", self.device)
            return [_Failure(JobStatus.FAILED, f"generation failed ({describe_error(exc)})")] * len(
                requests
            )

    def _generate(
        self,
        runner: Runner,
        requests: Sequence[GenerationRequest],
        running: _Running,
        on_step: Callable[[StepProgress], None],
        want_preview: bool,
    ) -> list[GenerationResult | _Failure]:
        """One batch; an OOM is retried once, lighter; an error in a shared batch is isolated."""
        cancelled = _Failure(JobStatus.CANCELLED, "cancelled")
        try:
            return list(
                runner.generate(
                    requests, on_step=on_step, cancel=running.cancel, want_preview=want_preview
                )
            )
        except Exception as exc:
            if running.cancel.is_set():
                return [cancelled] * len(requests)
            if not self._memory.is_out_of_memory(exc):
                if len(requests) > 1:
                    log.warning(
                        "a batch of %d jobs failed (%s); running each alone",
                        len(requests),
                        describe_error(exc),
                    )
                    return [
                        self._generate(runner, [request], running, on_step, want_preview)[0]
                        for request in requests
                    ]
                log.exception("generation failed on %s", self.device)
                return [_Failure(JobStatus.FAILED, f"generation failed ({describe_error(exc)})")]
            log.warning(
                "out of memory on %s (%s); cleaning up and retrying lighter",
                self.device,
                describe_error(exc),
            )
        # Out of memory. Outside the except block, so the traceback's tensors are already freed.
        running.retried = True
        self._clean()
        lighter = self._memory.lighter(requests)
        try:
            return list(
                runner.generate(
                    requests,
                    on_step=on_step,
                    cancel=running.cancel,
                    lighter=lighter,
                    want_preview=want_preview,
                )
            )
        except Exception as exc:
            if running.cancel.is_set():
                return [cancelled] * len(requests)
            if self._memory.is_out_of_memory(exc):
                log.warning("out of memory again on %s (%s)", self.device, describe_error(exc))
                describe = getattr(lighter, "describe", None)
                savers = describe() if callable(describe) else "lighter settings"
                message = (
                    f"out of memory on {self.device}, also after freeing cached memory and "
                    f"retrying with {savers}; try a smaller size or fewer images"
                )
            else:
                log.exception("the lighter retry failed on %s", self.device)
                message = f"generation failed ({describe_error(exc)})"
        self._clean()
        return [_Failure(JobStatus.FAILED, message)] * len(requests)

    def _after_batch(self, jobs: int) -> None:
        """Between batches: clean up when the memory policy says so."""
        self._jobs_since_clean += jobs
        try:
            if self._memory.should_clean(self._jobs_since_clean):
                self._clean()
        except Exception:
            log.exception("memory cleanup failed on %s", self.device)

    def _clean(self) -> None:
        seconds = self._memory.cleanup()
        self._jobs_since_clean = 0
        self._last_cleanup_s = seconds
        self._cleanup_total_s += seconds
        self._cleanups += 1


def _consume_exception(future: asyncio.Future[Any]) -> None:
    """Mark an abandoned future's error as seen (it is reported where it matters)."""
    if not future.cancelled():
        future.exception()
