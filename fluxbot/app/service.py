"""JobService: the store and the scheduler kept in step, for the bot (or any other front end).

A job is committed to the store before it is queued (and before the user hears of it); its state
follows the scheduler's events; its images are written (atomically, then their rows) before
anyone is told it is done. At start, what a crash left queued or running is queued again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from fluxbot.app.derive import ImageJob
from fluxbot.app.uploads import Upload
from fluxbot.config import RecoverPolicy
from fluxbot.core.requests import GenerationRequest, JobKind, JobStatus
from fluxbot.engine.safety import ImageClassifier, classify_files
from fluxbot.serving.events import FinishedEvent, JobEvent, StartedEvent
from fluxbot.serving.handle import JobHandle, QueuePlace
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.scheduler import Scheduler
from fluxbot.store import Store
from fluxbot.store.jobs import Origin
from fluxbot.store.models import JobRow
from fluxbot.store.recovery import Recovery
from fluxbot.store.removal import Removal
from fluxbot.store.sources import SourceMissing

log = logging.getLogger(__name__)

FinishedCallback = Callable[[JobRow, JobOutcome], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Submission:
    row: JobRow
    handle: JobHandle
    place: QueuePlace | None


class JobService:
    """Submit, cancel and follow jobs; durable state in the store, live state in the scheduler."""

    def __init__(
        self, store: Store, scheduler: Scheduler, *, classifier: ImageClassifier | None = None
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.classifier = classifier
        self._rows: dict[str, int] = {}
        self._started: dict[str, asyncio.Task[None]] = {}
        self._persisting: set[asyncio.Task[None]] = set()
        self._callbacks: list[FinishedCallback] = []
        scheduler.add_listener(self._on_event)

    def on_finished(self, callback: FinishedCallback) -> None:
        """Called after a job's final state (and images) are durable."""
        self._callbacks.append(callback)

    async def start(self, policy: RecoverPolicy) -> Recovery:
        """Recover what the last process left and start the workers.

        Returns the recovery: `queued` jobs are queued again here (follow them through
        `handle`), `failed` ones could not be resumed (tell their users).
        """
        startup = await self.store.startup(policy)
        if startup.orphans_removed:
            log.info("removed %d orphan image file(s)", len(startup.orphans_removed))
        await self.scheduler.start()
        failed = list(startup.recovery.failed)
        queued = []
        for row in startup.recovery.queued:
            try:
                request = await self.stored_request(row)
            except SourceMissing:
                error = "the image this job started from is no longer stored"
                failed.append(await self.store.jobs.mark_failed(row.id, error))
                continue
            self._enqueue(row, request, front=True)
            queued.append(row)
        if queued:
            log.info("requeued %d job(s) left by the last run", len(queued))
        return Recovery(queued=queued, failed=failed)

    async def stored_request(self, row: JobRow) -> GenerationRequest:
        """The request a stored job runs, with its source image's bytes when it has one."""
        request = GenerationRequest.from_params(row.params)
        edit = request.edit
        if edit is not None and edit.source_sha256 is not None:
            data = await self.store.sources.load(row.user_id, edit.source_sha256)
            request = replace(request, edit=edit.with_source(data))
        return request

    async def submit(
        self,
        user_id: int,
        request: GenerationRequest,
        *,
        kind: JobKind = JobKind.IMAGINE,
        origin: Origin | None = None,
        parent_id: int | None = None,
        want_preview: bool = False,
        private: bool = False,
        source: Upload | None = None,
    ) -> Submission:
        """Store the job (and first the image it starts from), then queue it; over a cap the
        row is removed and QueueFull raised."""
        self.scheduler.check_capacity(user_id)  # refuse before writing anything
        if source is not None:
            await self.store.sources.save(
                user_id, source.sha256, source.data, source.format, source.width, source.height
            )
        row = await self.store.jobs.create(
            user_id, request, kind=kind, origin=origin, parent_id=parent_id, private=private
        )
        try:
            handle = self._enqueue(row, request, want_preview=want_preview)
        except Exception:
            await self.store.delete_jobs([row.id])
            raise
        return Submission(row, handle, self.scheduler.place(row.public_id))

    async def submit_image_job(
        self,
        user_id: int,
        job: ImageJob,
        *,
        origin: Origin | None = None,
        want_preview: bool = False,
        private: bool = False,
    ) -> Submission:
        """Submit a job made from an image (fluxbot.app.derive); a private parent keeps the
        child private whatever the caller asked."""
        return await self.submit(
            user_id,
            job.request,
            kind=job.kind,
            origin=origin,
            parent_id=job.parent_id,
            want_preview=want_preview,
            private=private or job.private,
            source=job.source,
        )

    def _enqueue(
        self,
        row: JobRow,
        request: GenerationRequest,
        *,
        front: bool = False,
        want_preview: bool = False,
    ) -> JobHandle:
        job = Job(
            job_id=row.public_id,
            user_id=row.user_id,
            request=request,
            created=row.created_at.timestamp(),
            priority_front=front,
            want_preview=want_preview,
        )
        handle = self.scheduler.submit(job)
        self._rows[row.public_id] = row.id
        return handle

    async def cancel(self, public_id: str) -> bool:
        """Cancel a queued or running job; True if it will end cancelled."""
        if self.scheduler.cancel(public_id):
            return True
        row = await self.store.jobs.by_public_id(public_id)
        if row is None or JobStatus(row.status).finished or public_id in self._rows:
            return False
        await self.store.jobs.cancel(row.id)  # known to the store only (never queued here)
        return True

    async def forget_user(self, user_id: int, *, wait_s: float = 30.0) -> Removal:
        """Cancel a user's queued and running jobs, then delete all their rows and images.

        Running jobs stop at their next step; their end is awaited (up to `wait_s`) so that no
        outcome is written after the user's data is gone.
        """
        cancelled = []
        for job in await self.store.jobs.queue():
            if job.user_id == user_id and await self.cancel(job.public_id):
                handle = self.scheduler.handle(job.public_id)
                if handle is not None:
                    cancelled.append(handle.result())
        if cancelled:
            await asyncio.wait([asyncio.ensure_future(c) for c in cancelled], timeout=wait_s)
        await self.flush()
        return await self.store.delete_user(user_id)

    def handle(self, public_id: str) -> JobHandle | None:
        return self.scheduler.handle(public_id)

    async def shutdown(self, grace_s: float = 30.0) -> int:
        """Drain the scheduler; jobs handed back stay queued in the store for the next start."""
        handed_back = await self.scheduler.shutdown(grace_s=grace_s)
        await self.flush()
        return len(handed_back)

    async def flush(self) -> None:
        """Wait until every finished job's state is written."""
        while self._persisting:
            await asyncio.gather(*list(self._persisting), return_exceptions=True)

    # -- events ---------------------------------------------------------------------------------

    def _on_event(self, event: JobEvent) -> None:
        row_id = self._rows.get(event.job_id)
        if row_id is None:
            return
        if isinstance(event, StartedEvent):
            task = asyncio.create_task(self._mark_running(row_id, event.device))
            self._started[event.job_id] = task
        elif isinstance(event, FinishedEvent):
            task = asyncio.create_task(self._persist(row_id, event.outcome))
            self._persisting.add(task)
            task.add_done_callback(self._persisting.discard)

    async def _mark_running(self, row_id: int, device: str) -> None:
        try:
            await self.store.jobs.mark_running(row_id, device)
        except Exception:
            log.exception("could not mark job %s running", row_id)

    async def _persist(self, row_id: int, outcome: JobOutcome) -> None:
        started = self._started.pop(outcome.job_id, None)
        if started is not None:
            await started
        self._rows.pop(outcome.job_id, None)
        try:
            row = await self._write_outcome(row_id, outcome)
        except Exception:
            log.exception("could not store the outcome of job %s", outcome.job_id)
            return
        if row is None:
            return
        if row.status is JobStatus.DONE:
            await self._count_usage(row, outcome)
        for callback in self._callbacks:
            try:
                await callback(row, outcome)
            except Exception:
                log.exception("a finished-job callback failed for job %s", outcome.job_id)

    async def _count_usage(self, row: JobRow, outcome: JobOutcome) -> None:
        timings = outcome.timings
        gpu_s = timings.text_encode + timings.denoise + timings.decode
        try:
            await self.store.usage.record_finish(
                row.guild_id, row.user_id, images=len(row.images), gpu_seconds=gpu_s
            )
        except Exception:
            log.exception("could not count the usage of job %s", row.public_id)

    async def _safety_checked(self, files: list[object]) -> list[object]:
        """Files the worker sent without a verdict (a Ray worker) are classified here."""
        if self.classifier is None or all(getattr(f, "safety", 0) is not None for f in files):
            return files
        try:
            # The ignore below: the files are EncodedImages; the worker API types them object.
            return await asyncio.to_thread(classify_files, self.classifier, files)  # type: ignore[arg-type]
        except Exception:
            log.exception("the image-safety check failed; the images are stored unchecked")
            return files

    async def _write_outcome(self, row_id: int, outcome: JobOutcome) -> JobRow | None:
        jobs = self.store.jobs
        timings = outcome.timings.as_dict()
        match outcome.status:
            case JobStatus.DONE:
                row = await jobs.require(row_id)
                files = await self._safety_checked(outcome.files)
                # The ignore below: the files are EncodedImages; the worker API types them object.
                return await self.store.finish_job(row, files, timings=timings)  # type: ignore[arg-type]
            case JobStatus.FAILED:
                return await jobs.mark_failed(row_id, outcome.error or "failed", timings=timings)
            case JobStatus.CANCELLED:
                return await jobs.cancel(row_id)
            case _:
                # Handed back at shutdown: it stays queued (or goes back to queued) for next time.
                await jobs.requeue(row_id)
                return None
