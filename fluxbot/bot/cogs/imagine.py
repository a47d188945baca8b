"""/imagine and /animate, and the 🔁 🎲 ❌ controls (buttons and raw reactions) under results."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.admission import Admission, Refused, Requester
from fluxbot.app.derived_jobs import DerivedJobs
from fluxbot.app.permissions import (
    Actor,
    PermissionDenied,
    can_cancel_job,
    require,
)
from fluxbot.app.uploads import Upload, check_declared_size, check_upload
from fluxbot.bot.actors import actor_for, actor_of, is_age_restricted, requester_of, role_ids
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import EMOJI_ACTIONS, JobButton
from fluxbot.bot.cogs.errors import send_error
from fluxbot.bot.cogs.styles import style_choices
from fluxbot.bot.live import LiveJob, StatusTarget
from fluxbot.core.edits import STRENGTH_MAX, STRENGTH_MIN
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import (
    ASPECT_PRESETS,
    MAX_COUNT,
    MAX_PROMPT_CHARS,
    SEED_MAX,
    AnimationSpec,
    GenerationRequest,
    JobKind,
    JobStatus,
    RequestError,
)
from fluxbot.core.seeds import SeedProfile, next_seed, random_seed
from fluxbot.store.guilds import GuildPolicy
from fluxbot.store.jobs import Origin
from fluxbot.store.models import JobRow, User
from fluxbot.store.usage import Claim, LimitReached

if TYPE_CHECKING:
    from fluxbot.app.compose import Draft
    from fluxbot.app.service import Submission
    from fluxbot.bot.client import FluxBot

log = logging.getLogger(__name__)

ASPECT_CHOICES = [app_commands.Choice(name=name, value=name) for name in ASPECT_PRESETS]


class Imagine(commands.Cog):
    """Turns commands, buttons and reactions into jobs, and jobs into posted results."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.admission = Admission(bot.store)
        self.derived = DerivedJobs(bot.store, bot.service, bot.engine.deriver)
        self._redelivery: asyncio.Task[int] | None = None

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Once connected: post what an earlier run finished but could not deliver."""
        if self._redelivery is None:
            self._redelivery = self.bot.spawn(self.bot.poster.redeliver(), "redeliver")

    # -- slash commands ---------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Make images with FLUX.1-schnell")
    @app_commands.describe(
        prompt="What to draw; flags like --ar 16:9 --seed 42 --no text work too",
        negative="What to keep out of the image (doubles the work)",
        aspect="Aspect ratio",
        seed=f"Seed, 0 to {SEED_MAX}; the same seed gives the same image",
        steps="Denoising steps (schnell is made for 4)",
        count=f"How many images, 1 to {MAX_COUNT}",
        private="Only you see the result",
        style="A style of this bot (see /styles): a LoRA and/or prompt preset",
        image="Start from this picture (PNG, JPEG or WebP, at most 25 MiB and 4096 px a side)",
        strength="With an image: how much may change, 0.05 to 1.0 (default 0.6)",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES)
    @app_commands.autocomplete(style=style_choices)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        negative: str | None = None,
        aspect: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        steps: app_commands.Range[int, 1, 8] | None = None,
        count: app_commands.Range[int, 1, MAX_COUNT] | None = None,
        private: bool | None = None,
        style: app_commands.Range[str, 1, 100] | None = None,
        image: discord.Attachment | None = None,
        strength: app_commands.Range[float, STRENGTH_MIN, STRENGTH_MAX] | None = None,
    ) -> None:
        # Answer Discord first (3 s): only the private default, cached, is read before.
        ephemeral = await self._private(interaction, private)
        deferred = await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        who, policy, user = await self._admit(interaction)
        chosen = self.bot.engine.styles.require(style) if style else None
        upload = await _checked_upload(image, strength)
        draft = self.bot.engine.composer.draft(
            prompt,
            negative=negative,
            aspect=aspect.value if aspect else None,
            seed=seed,
            steps=steps,
            count=count,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            strict=not who.age_restricted_channel,
            style=chosen,
        )
        self.admission.check_request(policy, draft.fields)
        await self._start(
            interaction,
            draft,
            JobKind.IMAGINE,
            who,
            policy,
            private=ephemeral,
            status_id=_message_id(deferred),
            upload=upload,
            strength=strength,
        )

    @app_commands.command(name="animate", description="A looping GIF morphing between two seeds")
    @app_commands.describe(
        prompt="What to draw",
        frames="Frames in the GIF, 2 to 24",
        seed="Start seed",
        seed_to="End seed (random if not given)",
        private="Only you see the result",
    )
    async def animate(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        frames: app_commands.Range[int, 2, 24] = 12,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        seed_to: app_commands.Range[int, 0, SEED_MAX] | None = None,
        private: bool | None = None,
    ) -> None:
        ephemeral = await self._private(interaction, private)
        deferred = await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        who, policy, user = await self._admit(interaction)
        spec = AnimationSpec(frames=frames, seed_to=random_seed() if seed_to is None else seed_to)
        draft = self.bot.engine.composer.draft(
            prompt,
            seed=seed,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            animation=spec,
            strict=not who.age_restricted_channel,
        )
        self.admission.check_request(policy, draft.fields)
        await self._start(
            interaction,
            draft,
            JobKind.ANIMATE,
            who,
            policy,
            private=ephemeral,
            status_id=_message_id(deferred),
        )

    async def _private(self, interaction: discord.Interaction, explicit: bool | None) -> bool:
        """The option if given, else the user's default or the server's (both cached)."""
        if explicit is not None:
            return explicit
        if await self.bot.store.users.private_default(interaction.user.id):
            return True
        return (await self.bot.store.guilds.get(interaction.guild_id)).private_default

    async def _admit(self, interaction: discord.Interaction) -> tuple[Requester, GuildPolicy, User]:
        """DMs, bans, the server's channels and role: refused before anything is made."""
        if interaction.guild_id is None and not self.bot.settings.allow_dms:
            raise UserError("Images can only be made in a server channel here.")
        who = requester_of(interaction)
        try:
            policy = await self.admission.check_requester(who)
        except Refused as exc:
            raise NotAllowed(str(exc)) from None
        user = await self.bot.store.users.get_or_create(interaction.user.id)
        return who, policy, user

    async def _seed_for(self, user_id: int, explicit: int | None) -> int:
        if explicit is not None:
            return explicit

        def pick(user: User) -> int:
            return next_seed(SeedProfile.parse(user.seed_profile), user.last_seed)

        return await self.bot.store.users.claim_seed(user_id, pick)

    async def _submit(
        self,
        actor: Actor,
        who: Requester,
        policy: GuildPolicy,
        request: GenerationRequest,
        kind: JobKind,
        origin: Origin,
        **kwargs: object,
    ) -> tuple[Submission, Claim]:
        """Count the job against the server's cooldown and quota (which spare bot owners, and
        the server's managers there), then queue it."""
        claim = await self.admission.claim(who, policy, actor)
        try:
            submission = await self.bot.service.submit(
                who.user_id,
                request,
                kind=kind,
                origin=origin,
                # The ignore below: the keyword options go unchanged to JobService.submit.
                **kwargs,  # type: ignore[arg-type]
            )
        except BaseException:
            await self.admission.release(claim)
            raise
        return submission, claim

    async def _start(
        self,
        interaction: discord.Interaction,
        draft: Draft,
        kind: JobKind,
        who: Requester,
        policy: GuildPolicy,
        *,
        private: bool,
        status_id: int | None = None,
        upload: Upload | None = None,
        strength: float | None = None,
    ) -> None:
        request = draft.finish(await self._seed_for(interaction.user.id, draft.seed))
        if upload is not None:
            request = self.bot.engine.deriver.from_upload(upload, request, strength)
        origin = Origin(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            interaction_id=interaction.id,
            application_id=interaction.application_id,
            private=private,
            age_restricted=who.age_restricted_channel,
        )
        submission, claim = await self._submit(
            actor_of(interaction),
            who,
            policy,
            request,
            kind,
            origin,
            want_preview=True,
            private=private,
            source=upload,
        )
        job_id = submission.row.public_id
        # Known before the first await: a fast job may be posted while its status is sent.
        live = self.bot.live.add(
            LiveJob(
                job_id,
                status=StatusTarget(interaction),
                interaction=interaction,
                upload_limit=interaction.filesize_limit,
                notices=draft.notices,
                private=private,
            )
        )
        place = submission.place
        text = (
            presenters.queued_text(job_id, place.position, place.eta_s)
            if place
            else f"🎨 `{job_id}` is starting…"
        )
        if draft.notices:
            text += "\n" + "\n".join(f"ℹ️ {n}" for n in draft.notices)
        # The status message is linked to its job before the user sees it (a ❌ on it at once
        # must find the job).
        # The "thinking" message the defer made: its id came with the defer's answer (asked
        # for only if Discord did not give it, a round trip saved per command).
        if status_id is None:
            status_id = (await interaction.original_response()).id
        await self.bot.store.jobs.set_messages(submission.row.id, status_message_id=status_id)
        await interaction.edit_original_response(content=text)
        await _tell_quota(interaction, claim)
        # Past the token's life the same message is edited through the bot token (which
        # cannot reach an ephemeral one).
        if not private and interaction.channel_id is not None:
            channel = self.bot.get_partial_messageable(
                interaction.channel_id, guild_id=interaction.guild_id
            )
            live.status.message = channel.get_partial_message(status_id)
        self.bot.poster.follow(submission.handle, live)

    # -- controls -----------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            row = await self.bot.store.jobs.by_public_id(job_id)
            if row is None:
                raise UserError(f"Job `{job_id}` no longer exists.")
            message = await self.act(
                action,
                row,
                actor_of(interaction),
                requester_of(interaction),
                interaction.message,
                interaction=interaction,
            )
            await interaction.followup.send(message, ephemeral=True)
        except Exception as exc:  # buttons have no tree error handler
            await send_error(interaction, exc)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """Reactions come from raw events: webhook-posted results are not in discord.py's cache."""
        if self.bot.user is None or payload.user_id == self.bot.user.id:
            return
        action = EMOJI_ACTIONS.get(str(payload.emoji))
        if action is None:
            return
        row = await self.bot.store.jobs.by_message_id(payload.message_id)
        if row is None:
            return
        member = payload.member
        permissions = member.guild_permissions if member is not None else None
        channel = self.bot.get_channel(payload.channel_id)
        nsfw = is_age_restricted(channel) if channel is not None else row.age_restricted
        who = Requester(
            user_id=payload.user_id,
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            role_ids=role_ids(member),
            age_restricted_channel=nsfw,
        )
        messageable = self.bot.get_partial_messageable(
            payload.channel_id, guild_id=payload.guild_id
        )
        try:
            await self.act(
                action,
                row,
                actor_for(self.bot, payload.user_id, payload.guild_id, permissions),
                who,
                messageable.get_partial_message(payload.message_id),
            )
        except (UserError, PermissionDenied, Refused, LimitReached, ValueError) as exc:
            log.info("reaction %s on job %s refused: %s", action, row.public_id, exc)
        except Exception:
            log.exception("reaction %s on job %s failed", action, row.public_id)

    async def act(
        self,
        action: str,
        row: JobRow,
        actor: Actor,
        who: Requester,
        message: discord.Message | discord.PartialMessage | None,
        *,
        interaction: discord.Interaction | None = None,
    ) -> str:
        """Run 🔁 / 🎲 / ❌ for `actor` on job `row`; returns what to tell the user.

        A new image from a job needs the job to be visible to the actor (a private one: its
        owner or a manager of its server; an age-restricted one: in such a channel) and passes
        the server's policy like any new job; it stays as private as the job it came from.
        """
        if action == "cancel":
            require(can_cancel_job(actor, row))
            return await self._cancel_or_delete(row, message)
        # The rules (visibility, policy, quota, privacy) live in fluxbot.app.derived_jobs.
        origin = Origin(guild_id=row.guild_id, channel_id=row.channel_id)
        derived = await self.derived.again(
            actor, who, row, new_seed=action != "reroll", origin=origin
        )
        live = LiveJob(derived.row.public_id, private=derived.row.private)
        if derived.row.private:
            # A private job's children go back privately: the button's own followup (or a DM).
            live.interaction = interaction
        elif message is not None and row.result_message_id == message.id:
            channel = self.bot.get_partial_messageable(message.channel.id, guild_id=row.guild_id)
            live.reply_to = channel.get_partial_message(message.id)
        self.bot.poster.follow(derived.submission.handle, live)
        return derived.describe()

    async def _cancel_or_delete(
        self,
        row: JobRow,
        message: discord.Message | discord.PartialMessage | None,
    ) -> str:
        active = JobStatus(row.status) in (JobStatus.QUEUED, JobStatus.RUNNING)
        if active and await self.bot.service.cancel(row.public_id):
            return f"Cancelled job `{row.public_id}`."
        if row.result_message_id and message is not None and message.id == row.result_message_id:
            try:
                await message.delete()
            except discord.HTTPException:
                log.info("could not delete the result message of job %s", row.public_id)
        await self.bot.store.delete_jobs([row.id])
        return f"Deleted job `{row.public_id}` and its images."


def _message_id(deferred: object) -> int | None:
    """The id of the message a defer made, from its callback response (discord.py 2.5+)."""
    return getattr(deferred, "message_id", None)


async def _tell_quota(interaction: discord.Interaction, claim: Claim) -> None:
    """What is left of the member's daily quota, in a message of its own that only they see:
    the status line is edited with progress and removed with the result, and this must stay."""
    note = claim.quota_note()
    if note is None:
        return
    try:
        await interaction.followup.send(f"ℹ️ {note}", ephemeral=True)
    except discord.HTTPException as exc:
        log.info("could not send the quota note: %s", exc)


async def _checked_upload(
    image: discord.Attachment | None, strength: float | None
) -> Upload | None:
    """The /imagine `image` option, checked by its declared size, then by its content; a
    `strength` without an image is refused. Nothing is queued before this passes."""
    if image is None:
        if strength is not None:
            raise RequestError("strength", strength, "used only together with `image`")
        return None
    check_declared_size(image.size)
    try:
        data = await image.read()
    except discord.HTTPException as exc:
        raise UserError(f"Could not download `image` ({exc.status}); try again.") from None
    return check_upload(data)


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(Imagine(bot))
