"""What the studio does, free of Gradio: create, follow, history, admin; every call checked.

Each method takes the caller's `Identity` and checks on the server what that person may do, so
the UI (or any HTTP client) cannot skip a check by calling an endpoint directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fluxbot.app.device_report import live_statuses
from fluxbot.app.export import ExportReport, export_user
from fluxbot.app.service import Submission
from fluxbot.core.requests import AnimationSpec, GenerationRequest, JobKind, JobStatus
from fluxbot.core.seeds import SeedProfile, next_seed, random_seed
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.devices.status import GpuStatus
from fluxbot.serving.events import FinishedEvent, PositionEvent, ProgressEvent
from fluxbot.serving.job import JobOutcome
from fluxbot.serving.scheduler import QueueEntry
from fluxbot.serving.workers.base import WorkerStatus
from fluxbot.store.jobs import JobPage
from fluxbot.store.models import JobRow, User
from fluxbot.store.removal import Removal
from fluxbot.web.access import Access, Identity, is_local_mode
from fluxbot.web.errors import NotAllowed, UserError

if TYPE_CHECKING:
    from PIL import Image

    from fluxbot.app.root import Engine
    from fluxbot.config import Settings
    from fluxbot.store import Store

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.5
STORE_POLL_S = 1.0
HISTORY_PER_PAGE = 12


@dataclass(frozen=True, slots=True)
class CreateForm:
    """The Create tab's fields, as typed (the composer parses and checks them)."""

    prompt: str
    negative: str = ""
    aspect: str | None = None
    seed: int | None = None
    steps: int | None = None
    count: int | None = None
    private: bool | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """One step of a job's life for the UI: a status line, progress and maybe a preview."""

    job_id: str
    text: str
    step: int = 0
    total: int = 0
    preview: Image.Image | None = None
    row: JobRow | None = None  # set on the last update: the job as stored


@dataclass(frozen=True, slots=True)
class DeviceCard:
    worker: WorkerStatus
    gpu: GpuStatus | None


@dataclass(slots=True)
class _Waiters:
    futures: dict[str, list[asyncio.Future[JobRow]]] = field(default_factory=dict)


class Studio:
    """The studio's operations on the shared store and engine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        access: Access,
        nvml: NvmlMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.access = access
        self.nvml = nvml or NvmlMonitor()
        self._waiters = _Waiters()
        engine.service.on_finished(self._finished)

    @property
    def local_operator(self) -> bool:
        """Local mode's owner is the operator at the machine: only the never-allowed list
        applies, as for the CLI."""
        return is_local_mode(self.settings)

    # -- making images --------------------------------------------------------------------------

    async def _member(self, identity: Identity) -> User:
        # The studio belongs to no server: only a bot-wide ban applies here.
        if await self.store.bans.is_banned(identity.user_id, None):
            raise NotAllowed("You are not allowed to make images with this bot.")
        return await self.store.users.get_or_create(identity.user_id)

    async def _seed_for(self, user_id: int, explicit: int | None) -> int:
        if explicit is not None:
            return explicit

        def pick(user: User) -> int:
            return next_seed(SeedProfile.parse(user.seed_profile), user.last_seed)

        return await self.store.users.claim_seed(user_id, pick)

    async def create(self, identity: Identity, form: CreateForm) -> tuple[Submission, list[str]]:
        """Compose (inline flags, policy, limits), store and queue; returns notices too."""
        user = await self._member(identity)
        if not form.prompt or not form.prompt.strip():
            raise UserError("Write a prompt first: what should the image show?")
        draft = self.engine.composer.draft(
            form.prompt,
            negative=form.negative or None,
            aspect=form.aspect or None,
            seed=form.seed,
            steps=form.steps,
            count=form.count,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            strict=not self.local_operator,
        )
        if form.private is not None and form.private != user.private_results:
            await self.store.users.update_settings(identity.user_id, private_results=form.private)
        request = draft.finish(await self._seed_for(identity.user_id, draft.seed))
        submission = await self.engine.service.submit(
            identity.user_id, request, kind=JobKind.IMAGINE, want_preview=True
        )
        return submission, list(draft.notices)

    async def animate(
        self,
        identity: Identity,
        prompt: str,
        *,
        frames: int = 12,
        seed: int | None = None,
        seed_to: int | None = None,
    ) -> tuple[Submission, list[str]]:
        user = await self._member(identity)
        if not prompt or not prompt.strip():
            raise UserError("Write a prompt first: what should the animation show?")
        spec = AnimationSpec(frames=frames, seed_to=random_seed() if seed_to is None else seed_to)
        draft = self.engine.composer.draft(
            prompt,
            seed=seed,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            animation=spec,
            strict=not self.local_operator,
        )
        request = draft.finish(await self._seed_for(identity.user_id, draft.seed))
        submission = await self.engine.service.submit(
            identity.user_id, request, kind=JobKind.ANIMATE, want_preview=True
        )
        return submission, list(draft.notices)

    async def again(self, identity: Identity, public_id: str, *, new_seed: bool) -> Submission:
        """Reroll (same seed, same pixels) or the same request with a new seed."""
        row = await self.job(identity, public_id)
        await self._member(identity)
        request = GenerationRequest.from_params(row.params)
        kind = JobKind.REROLL
        if new_seed:
            kind = JobKind.VARIATION
            request = replace(request, seed=random_seed())
        return await self.engine.service.submit(
            identity.user_id, request, kind=kind, parent_id=row.id, want_preview=True
        )

    # Image actions of issue 13 (vary, upscale, zoom, pan) go here, beside `again`: each takes a
    # job the caller may see and submits a child job with `parent_id`, like `again` does.

    async def cancel(self, identity: Identity, public_id: str) -> str:
        row = await self.job(identity, public_id)
        if JobStatus(row.status).finished or not await self.engine.service.cancel(row.public_id):
            raise UserError(f"Job `{row.public_id}` is not waiting or running any more.")
        return f"Cancelled job `{row.public_id}`."

    async def follow(self, public_id: str) -> AsyncIterator[Update]:
        """The job's queue position/ETA, steps and previews, then its stored final state.

        Leaving the loop early (a browser that went away) changes nothing about the job.
        """
        waiter: asyncio.Future[JobRow] = asyncio.get_running_loop().create_future()
        self._waiters.futures.setdefault(public_id, []).append(waiter)
        try:
            handle = self.engine.service.handle(public_id)
            if handle is not None:
                place = self.engine.scheduler.place(public_id)
                if place is not None:
                    yield Update(public_id, queued_text(public_id, place.position, place.eta_s))
                async for event in handle.events(min_interval_s=UPDATE_INTERVAL_S):
                    if isinstance(event, FinishedEvent):
                        break
                    if isinstance(event, PositionEvent):
                        yield Update(public_id, queued_text(public_id, event.position, event.eta_s))
                    elif isinstance(event, ProgressEvent):
                        yield Update(
                            public_id,
                            f"Making `{public_id}`: step {event.step} of {event.total}",
                            event.step,
                            event.total,
                            event.preview,
                        )
                    else:
                        yield Update(public_id, f"Making `{public_id}` on {event.device}…")
            row = await self._stored_final(public_id, waiter)
            yield Update(public_id, final_text(row, public_id), row=row)
        finally:
            waiting = self._waiters.futures.get(public_id, [])
            with contextlib.suppress(ValueError):
                waiting.remove(waiter)
            if not waiting:
                self._waiters.futures.pop(public_id, None)

    async def _stored_final(self, public_id: str, waiter: asyncio.Future[JobRow]) -> JobRow | None:
        """The row once its final state is durable (the service tells us; the store is checked
        too, for a job finished before we listened or in another process)."""
        while True:
            row = await self.store.jobs.by_public_id(public_id)
            if row is None or JobStatus(row.status).finished:
                return row
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(waiter), STORE_POLL_S)

    async def _finished(self, row: JobRow, _outcome: JobOutcome) -> None:
        for waiter in self._waiters.futures.get(row.public_id, []):
            if not waiter.done():
                waiter.set_result(row)

    # -- history --------------------------------------------------------------------------------

    async def history(
        self, identity: Identity, *, page: int = 0, text: str = "", seed: int | None = None
    ) -> JobPage:
        return await self.store.jobs.for_user(
            identity.user_id, page=page, per_page=HISTORY_PER_PAGE, text=text or None, seed=seed
        )

    async def job(self, identity: Identity, public_id: str) -> JobRow:
        """A job the caller may see: their own, or anyone's for an admin."""
        row = await self.store.jobs.by_public_id((public_id or "").strip())
        if row is None or (row.user_id != identity.user_id and not identity.is_admin):
            raise UserError(f"There is no job `{(public_id or '').strip()[:16]}` of yours.")
        return row

    async def lineage(self, row: JobRow) -> tuple[list[JobRow], list[JobRow]]:
        """The job's ancestors (oldest first) and the jobs made from it."""
        ancestors: list[JobRow] = []
        parent_id = row.parent_id
        while parent_id is not None and len(ancestors) < 20:
            parent = await self.store.jobs.get(parent_id)
            if parent is None:
                break
            ancestors.insert(0, parent)
            parent_id = parent.parent_id
        return ancestors, await self.store.jobs.children(row.id)

    async def image_file(self, identity: Identity, public_id: str, index: int) -> Path:
        row = await self.job(identity, public_id)
        for image in row.images:
            if image.index == index:
                return self.store.image_path(image.path)
        raise UserError(f"Job `{row.public_id}` has no image {index + 1}.")

    def image_paths(self, row: JobRow) -> list[tuple[Path, int]]:
        return [(self.store.image_path(i.path), i.seed) for i in sorted(row.images, key=_index)]

    async def delete(self, identity: Identity, public_id: str) -> str:
        row = await self.job(identity, public_id)
        if JobStatus(row.status) in (JobStatus.QUEUED, JobStatus.RUNNING):
            await self.engine.service.cancel(row.public_id)
            await self.engine.service.flush()
        await self.store.delete_jobs([row.id])
        return f"Deleted job `{row.public_id}` and its images."

    async def export(self, identity: Identity) -> ExportReport:
        """The CLI's export of the caller's own data, to a temporary zip the caller removes."""
        folder = Path(tempfile.mkdtemp(prefix="fluxbot-export-"))
        return await export_user(self.store, identity.user_id, folder / "fluxbot-export.zip")

    async def forget(self, identity: Identity) -> Removal:
        """Cancel the caller's waiting jobs, then delete all their rows and files."""
        for job in await self.store.jobs.queue():
            if job.user_id == identity.user_id:
                await self.engine.service.cancel(job.public_id)
        await self.engine.service.flush()
        return await self.store.delete_user(identity.user_id)

    # -- admin ----------------------------------------------------------------------------------

    @staticmethod
    def require_admin(identity: Identity) -> None:
        if not identity.is_admin:
            raise NotAllowed("This page is for the bot's admins.")

    async def devices(self, identity: Identity) -> list[DeviceCard]:
        self.require_admin(identity)
        statuses = await asyncio.to_thread(self._device_statuses)
        workers = self.engine.scheduler.status().workers
        return [DeviceCard(w, statuses.get(w.device)) for w in workers]

    def _device_statuses(self) -> dict[str, GpuStatus]:
        return live_statuses(self.engine.devices, self.nvml)

    def queue(self, identity: Identity) -> tuple[list[QueueEntry], bool]:
        self.require_admin(identity)
        status = self.engine.scheduler.status()
        return list(status.queue), status.paused

    def set_paused(self, identity: Identity, paused: bool) -> str:
        self.require_admin(identity)
        if paused:
            self.engine.scheduler.pause()
            return "Paused: no new jobs start (running ones finish)."
        self.engine.scheduler.resume()
        return "Resumed."

    async def admin_cancel(self, identity: Identity, public_id: str) -> str:
        self.require_admin(identity)
        return await self.cancel(identity, public_id)

    async def set_banned(self, identity: Identity, user_id: int, banned: bool) -> str:
        self.require_admin(identity)
        # Studio admins are the bot's owners: their bans hold everywhere (guild None).
        if banned:
            await self.store.bans.ban(user_id, None, by=identity.user_id)
        else:
            await self.store.bans.unban(user_id, None)
        return f"{'Banned' if banned else 'Unbanned'} user {user_id} everywhere."


def _index(image: object) -> int:
    return int(getattr(image, "index", 0))


def queued_text(public_id: str, position: int, eta_s: float) -> str:
    return f"Queued `{public_id}`: position {position}, ready in about {eta_s:.0f} s"


def final_text(row: JobRow | None, public_id: str) -> str:
    if row is None:
        return f"Job `{public_id}` was deleted."
    match JobStatus(row.status):
        case JobStatus.DONE:
            return f"Done: `{row.public_id}`"
        case JobStatus.CANCELLED:
            return f"Job `{row.public_id}` was cancelled."
        case JobStatus.FAILED:
            return f"Job `{row.public_id}` failed: {row.error or 'unknown error'}"
    return f"Job `{row.public_id}` is {row.status}."
