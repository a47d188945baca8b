"""What the studio does, free of Gradio: create, follow, history, admin; every call checked.

Each method takes the caller's `Identity` and asks the permission model (fluxbot/app/
permissions.py) and the server policy (fluxbot/app/admission.py) on the server what that person
may do, so the UI (or any HTTP client) cannot skip a check by calling an endpoint directly. New
jobs from existing ones (reroll, new seed, vary, remix, upscale, zoom, pan) go through
`DerivedJobs`, the same path as Discord's buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fluxbot.app.admission import Admission, Refused, Requester
from fluxbot.app.derived_jobs import IMAGE_ACTIONS, Derived, DerivedJobs
from fluxbot.app.device_report import live_statuses
from fluxbot.app.export import ExportReport, export_user
from fluxbot.app.permissions import (
    Decision,
    PermissionDenied,
    can_ban,
    can_cancel_job,
    can_control_bot,
    can_show_job,
    can_view_job,
    history_scope,
    queue_scope,
    require,
)
from fluxbot.app.service import Submission
from fluxbot.core.edits import Operation, check_strength
from fluxbot.core.requests import AnimationSpec, JobKind, JobStatus, RequestError
from fluxbot.core.seeds import SeedProfile, next_seed, random_seed
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.devices.status import GpuStatus
from fluxbot.serving.events import FinishedEvent, PositionEvent, ProgressEvent
from fluxbot.serving.job import JobOutcome
from fluxbot.serving.scheduler import QueueEntry
from fluxbot.serving.workers.base import WorkerStatus
from fluxbot.store.guilds import GuildPolicy
from fluxbot.store.jobs import JobPage
from fluxbot.store.models import JobRow, User
from fluxbot.store.removal import Removal
from fluxbot.store.usage import Claim
from fluxbot.web.access import Access, Identity, is_local_mode
from fluxbot.web.errors import NotAllowed, UserError

if TYPE_CHECKING:
    from PIL import Image

    from fluxbot.app.compose import Draft
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
        self.admission = Admission(store)
        self.derived = DerivedJobs(store, engine.service, engine.deriver)
        self._waiters = _Waiters()
        engine.service.on_finished(self._finished)

    @property
    def local_operator(self) -> bool:
        """Local mode's owner is the operator at the machine: only the never-allowed list
        applies, as for the CLI."""
        return is_local_mode(self.settings)

    # -- making images --------------------------------------------------------------------------

    def requester(self, identity: Identity) -> Requester:
        """The studio belongs to no server: the policy outside servers applies (a bot-wide ban
        refuses; a ban in one server does not), as for a Discord DM. Local mode's operator is
        the "age-restricted place" the CLI is: the relaxed prompt policy applies."""
        return Requester(user_id=identity.user_id, age_restricted_channel=self.local_operator)

    async def _member(self, identity: Identity) -> tuple[User, Requester, GuildPolicy]:
        who = self.requester(identity)
        try:
            policy = await self.admission.check_requester(who)
        except Refused as exc:
            raise NotAllowed(str(exc)) from None
        return await self.store.users.get_or_create(identity.user_id), who, policy

    async def _seed_for(self, user_id: int, explicit: int | None) -> int:
        if explicit is not None:
            return explicit

        def pick(user: User) -> int:
            return next_seed(SeedProfile.parse(user.seed_profile), user.last_seed)

        return await self.store.users.claim_seed(user_id, pick)

    async def _queue_new(
        self,
        identity: Identity,
        who: Requester,
        policy: GuildPolicy,
        draft: Draft,
        kind: JobKind,
        private: bool,
    ) -> Submission:
        """Seed the draft, count the job against the cooldown and quota, then queue it (or give
        the claim back)."""
        request = draft.finish(await self._seed_for(identity.user_id, draft.seed))
        claim: Claim = await self.admission.claim(who, policy, identity.actor)
        try:
            return await self.engine.service.submit(
                identity.user_id, request, kind=kind, want_preview=True, private=private
            )
        except BaseException:
            await self.admission.release(claim)
            raise

    async def create(self, identity: Identity, form: CreateForm) -> tuple[Submission, list[str]]:
        """Compose (inline flags, policy, limits), store and queue; returns notices too."""
        user, who, policy = await self._member(identity)
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
            strict=not who.age_restricted_channel,
        )
        self.admission.check_request(policy, draft.fields)
        if form.private is not None and form.private != user.private_results:
            await self.store.users.update_settings(identity.user_id, private_results=form.private)
        private = user.private_results if form.private is None else form.private
        submission = await self._queue_new(identity, who, policy, draft, JobKind.IMAGINE, private)
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
        user, who, policy = await self._member(identity)
        if not prompt or not prompt.strip():
            raise UserError("Write a prompt first: what should the animation show?")
        spec = AnimationSpec(frames=frames, seed_to=random_seed() if seed_to is None else seed_to)
        draft = self.engine.composer.draft(
            prompt,
            seed=seed,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            animation=spec,
            strict=not who.age_restricted_channel,
        )
        self.admission.check_request(policy, draft.fields)
        submission = await self._queue_new(
            identity, who, policy, draft, JobKind.ANIMATE, user.private_results
        )
        return submission, list(draft.notices)

    async def _parent(self, public_id: str) -> JobRow:
        row = await self.store.jobs.by_public_id((public_id or "").strip())
        if row is None:
            raise UserError(f"There is no job `{(public_id or '').strip()[:16]}`.")
        return row

    async def again(self, identity: Identity, public_id: str, *, new_seed: bool) -> Derived:
        """Reroll (same seed, same pixels) or the same request with a new seed: Discord's 🔁 / 🎲,
        through the same rules (the job must be visible to the caller; policy; quota)."""
        parent = await self._parent(public_id)
        return await self.derived.again(
            identity.actor,
            self.requester(identity),
            parent,
            new_seed=new_seed,
            want_preview=True,
        )

    async def image_action(
        self, identity: Identity, public_id: str, code: str, image: int = 1
    ) -> Derived:
        """One of the image actions under a result (`IMAGE_ACTIONS`: vary1, vary2, up, z15, z2,
        pl, pr, pu, pd) on image number `image` (from 1) of the job; remix has its own form."""
        action = IMAGE_ACTIONS.get((code or "").strip())
        if action is None or action.operation is Operation.REMIX:
            codes = [c for c, a in IMAGE_ACTIONS.items() if a.operation is not Operation.REMIX]
            choices = ", ".join(codes)
            raise RequestError("action", code, choices)
        parent = await self._parent(public_id)
        return await self.derived.edit(
            identity.actor,
            self.requester(identity),
            parent,
            action.operation,
            index=_image_index(image),
            **action.options,
        )

    async def remix(
        self,
        identity: Identity,
        public_id: str,
        image: int = 1,
        *,
        prompt: str = "",
        strength: float | str | None = None,
        from_scratch: bool = False,
    ) -> Derived:
        """Remix: the edited prompt from image `image` of the job at `strength` (img2img), or
        from scratch with the image's seed."""
        parent = await self._parent(public_id)
        text = (prompt or "").strip() or parent.prompt
        chosen = None if strength in (None, "") else check_strength(strength)
        return await self.derived.edit(
            identity.actor,
            self.requester(identity),
            parent,
            Operation.REMIX,
            index=_image_index(image),
            prompt=text,
            strength=None if from_scratch else chosen,
            from_scratch=from_scratch,
        )

    async def cancel(self, identity: Identity, public_id: str) -> str:
        """Cancel a waiting or running job: its owner, or a bot owner (the permission model)."""
        row = await self._parent(public_id)
        require(can_cancel_job(identity.actor, row))
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
        """The caller's own jobs, newest first (the studio lists no one else's history)."""
        _require_scope(history_scope(identity.actor, identity.user_id))
        return await self.store.jobs.for_user(
            identity.user_id, page=page, per_page=HISTORY_PER_PAGE, text=text or None, seed=seed
        )

    async def job(self, identity: Identity, public_id: str) -> JobRow:
        """A job the caller may see: their own (it is in their history), else as `/show` would
        show it outside an age-restricted channel (public; private: a bot owner)."""
        row = await self._parent(public_id)
        if row.user_id != identity.user_id:
            nsfw = self.requester(identity).age_restricted_channel
            require(can_show_job(identity.actor, row, age_restricted_channel=nsfw))
        return row

    async def lineage(self, identity: Identity, row: JobRow) -> tuple[list[JobRow], list[JobRow]]:
        """The job's ancestors (oldest first) and the jobs made from it, those the caller may
        see (a stranger's private variation of a public job stays theirs)."""
        actor = identity.actor
        ancestors: list[JobRow] = []
        parent_id = row.parent_id
        while parent_id is not None and len(ancestors) < 20:
            parent = await self.store.jobs.get(parent_id)
            if parent is None:
                break
            ancestors.insert(0, parent)
            parent_id = parent.parent_id
        children = await self.store.jobs.children(row.id)
        return (
            [a for a in ancestors if can_view_job(actor, a)],
            [c for c in children if can_view_job(actor, c)],
        )

    async def image_file(self, identity: Identity, public_id: str, index: int) -> Path:
        row = await self.job(identity, public_id)
        for image in row.images:
            if image.index == index:
                return self.store.image_path(image.path)
        raise UserError(f"Job `{row.public_id}` has no image {index + 1}.")

    def image_paths(self, row: JobRow) -> list[tuple[Path, int]]:
        return [(self.store.image_path(i.path), i.seed) for i in sorted(row.images, key=_index)]

    async def delete(self, identity: Identity, public_id: str) -> str:
        row = await self._parent(public_id)
        require(can_cancel_job(identity.actor, row))
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
        """The Admin page acts on the whole bot: its owners only (the permission model)."""
        require(can_control_bot(identity.actor))

    async def devices(self, identity: Identity) -> list[DeviceCard]:
        self.require_admin(identity)
        statuses = await asyncio.to_thread(self._device_statuses)
        workers = self.engine.scheduler.status().workers
        return [DeviceCard(w, statuses.get(w.device)) for w in workers]

    def _device_statuses(self) -> dict[str, GpuStatus]:
        return live_statuses(self.engine.devices, self.nvml)

    def queue(self, identity: Identity) -> tuple[list[QueueEntry], bool]:
        # Outside any server only the bot's owners see the queue (everyone's prompts).
        _require_scope(queue_scope(identity.actor))
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
        # The studio acts outside any server: a ban from here holds everywhere (owners only).
        require(can_ban(identity.actor, None))
        if banned:
            await self.store.bans.ban(user_id, None, by=identity.user_id)
        else:
            await self.store.bans.unban(user_id, None)
        return f"{'Banned' if banned else 'Unbanned'} user {user_id} everywhere."


def _require_scope(scope: object) -> None:
    """`history_scope` / `queue_scope` answer a Scope, or a refusing Decision."""
    if isinstance(scope, Decision):
        raise PermissionDenied(scope.reason)


def _image_index(image: int | float | str | None) -> int:
    """Image number `image` (1..4, as people count) as an index; the Deriver checks the range."""
    try:
        number = 1 if image is None or image == "" else int(image)
    except (TypeError, ValueError):
        raise RequestError("image", image, "the number of one of the job's images") from None
    return number - 1


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
