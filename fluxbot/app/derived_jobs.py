"""New jobs made from an existing job, for every front end: 🔁 / 🎲 (its request again, with the
same or a new seed) and the image actions (vary, remix, upscale, zoom out, pan).

One path for the rules, whoever asks: the permission model (only someone who may see the job may
use it; an age-restricted job only from an age-restricted place), the server's policy (bans,
channel, role, caps; the cooldown and quota counted before the job is queued and given back if
it is not), the `Deriver`'s lineage, then the service's fair queue. Children are as private and
as age-restricted as their parent. The Discord cogs and the web studio only say who acts, from
where, and how the result goes back to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fluxbot.app.admission import Admission, Refused, Requester
from fluxbot.app.derive import Deriver, upload_from_png
from fluxbot.app.permissions import Actor, can_reuse_job, require
from fluxbot.app.service import JobService, Submission
from fluxbot.core.edits import VARY_STRONG, VARY_SUBTLE, Operation
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import GenerationRequest, JobKind
from fluxbot.core.seeds import random_seed
from fluxbot.store import Store
from fluxbot.store.guilds import GuildPolicy
from fluxbot.store.jobs import Origin
from fluxbot.store.models import JobRow
from fluxbot.store.sources import SourceMissing
from fluxbot.store.usage import Claim


@dataclass(frozen=True, slots=True)
class ImageAction:
    """One image action as people see it (a button), and what it asks of the `Deriver`."""

    code: str  # short and stable: Discord's custom ids and the studio's API carry it
    label: str
    operation: Operation
    options: Mapping[str, Any]


IMAGE_ACTIONS: dict[str, ImageAction] = {
    action.code: action
    for action in (
        ImageAction("vary1", "Vary (Subtle)", Operation.VARY, {"strength": VARY_SUBTLE}),
        ImageAction("vary2", "Vary (Strong)", Operation.VARY, {"strength": VARY_STRONG}),
        ImageAction("remix", "Remix", Operation.REMIX, {}),
        ImageAction("up", "Upscale ×2", Operation.UPSCALE, {}),
        ImageAction("z15", "Zoom out ×1.5", Operation.ZOOM, {"zoom": 1.5}),
        ImageAction("z2", "Zoom out ×2", Operation.ZOOM, {"zoom": 2.0}),
        ImageAction("pl", "Pan ⬅️", Operation.PAN, {"pan": "left"}),
        ImageAction("pr", "Pan ➡️", Operation.PAN, {"pan": "right"}),
        ImageAction("pu", "Pan ⬆️", Operation.PAN, {"pan": "up"}),
        ImageAction("pd", "Pan ⬇️", Operation.PAN, {"pan": "down"}),
    )
}


@dataclass(frozen=True, slots=True)
class Derived:
    """A queued child job: the submission, the request it runs, and its place in the quota."""

    submission: Submission
    request: GenerationRequest
    claim: Claim
    parent: JobRow

    @property
    def row(self) -> JobRow:
        return self.submission.row

    def describe(self) -> str:
        """What to tell the person: "Vary (strength 0.35) of `abc123`: job `def456` (seed 9,
        position 1)." and the quota's note when the server has one."""
        edit = self.request.edit
        if self.row.kind == JobKind.REROLL:
            what = "Rerolling with the same seed"
        elif self.row.kind == JobKind.VARIATION or edit is None:
            what = "New seed"
        else:
            what = f"{edit.describe().capitalize()} of `{self.parent.public_id}`"
        place = self.submission.place
        where = f", position {place.position}" if place else ""
        text = f"{what}: job `{self.row.public_id}` (seed {self.request.seed}{where})."
        note = self.claim.quota_note()
        return f"{text}\nℹ️ {note}" if note else text


def inherited(origin: Origin | None, parent: JobRow) -> Origin:
    """A child is private when its parent is, and age-restricted when its parent is."""
    origin = origin or Origin()
    return replace(
        origin,
        private=origin.private or bool(parent.private),
        age_restricted=origin.age_restricted or bool(parent.age_restricted),
    )


class DerivedJobs:
    """Makes and queues jobs from existing jobs, under one store's policies."""

    def __init__(self, store: Store, service: JobService, deriver: Deriver) -> None:
        self.store = store
        self.service = service
        self.deriver = deriver
        self.admission = Admission(store)

    async def admit(self, actor: Actor, who: Requester, parent: JobRow) -> GuildPolicy:
        """May `actor` make a new image from `parent`, from where `who` asks? The policy if so."""
        require(can_reuse_job(actor, parent, age_restricted_channel=who.age_restricted_channel))
        try:
            return await self.admission.check_requester(who)
        except Refused as exc:
            raise NotAllowed(str(exc)) from None

    async def edit(
        self,
        actor: Actor,
        who: Requester,
        parent: JobRow,
        operation: Operation,
        *,
        index: int = 0,
        origin: Origin | None = None,
        want_preview: bool = True,
        **options: Any,
    ) -> Derived:
        """An image action on image `index` of `parent` (options: the `Deriver`'s: strength,
        zoom, pan, prompt, from_scratch, seed)."""
        policy = await self.admit(actor, who, parent)
        job = await self.deriver.from_job(
            parent,
            actor.user_id,
            operation,
            index=index,
            admin=True,  # `admit` applied the permission model
            strict=not who.age_restricted_channel,
            **options,
        )
        request = job.request
        self.admission.check_request(policy, {"count": request.count, "steps": request.steps})
        child_origin = inherited(origin, parent)

        def submit() -> Awaitable[Submission]:
            return self.service.submit_image_job(
                who.user_id,
                job,
                origin=child_origin,
                want_preview=want_preview,
                private=child_origin.private,
            )

        return await self._queue(actor, who, policy, request, parent, submit)

    async def again(
        self,
        actor: Actor,
        who: Requester,
        parent: JobRow,
        *,
        new_seed: bool,
        origin: Origin | None = None,
        want_preview: bool = False,
    ) -> Derived:
        """🔁 (the same request and seed: the same pixels) or 🎲 (a new seed) on `parent`."""
        policy = await self.admit(actor, who, parent)
        # The stored request with its source image's bytes, when it was made from an image.
        try:
            request = await self.service.stored_request(parent)
        except SourceMissing:
            raise UserError(
                f"The image job `{parent.public_id}` started from is no longer stored, so it "
                "cannot be made again."
            ) from None
        kind = JobKind.REROLL
        if new_seed:
            kind = JobKind.VARIATION
            request = replace(request, seed=random_seed())
        self.admission.check_request(policy, {"count": request.count, "steps": request.steps})
        source_bytes = request.edit.source if request.edit is not None else None
        # Kept again under the new job's owner, as every source is.
        source = upload_from_png(source_bytes) if source_bytes else None
        child_origin = inherited(origin, parent)

        def submit() -> Awaitable[Submission]:
            return self.service.submit(
                who.user_id,
                request,
                kind=kind,
                origin=child_origin,
                parent_id=parent.id,
                want_preview=want_preview,
                private=child_origin.private,
                source=source,
            )

        return await self._queue(actor, who, policy, request, parent, submit)

    async def _queue(
        self,
        actor: Actor,
        who: Requester,
        policy: GuildPolicy,
        request: GenerationRequest,
        parent: JobRow,
        submit: Callable[[], Awaitable[Submission]],
    ) -> Derived:
        """Count the job against the cooldown and quota (which spare bot owners, and a server's
        managers there), then queue it (or give the claim back)."""
        claim = await self.admission.claim(who, policy, actor)
        try:
            submission = await submit()
        except BaseException:
            await self.admission.release(claim)
            raise
        return Derived(submission, request, claim, parent)
