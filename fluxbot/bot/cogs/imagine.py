"""/imagine and /animate, and the 🔁 🎲 ❌ controls (buttons and raw reactions) under results."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.checks import is_admin_id
from fluxbot.bot.cogs.controls import EMOJI_ACTIONS, JobButton
from fluxbot.bot.cogs.errors import NotAllowed, UserError, send_error
from fluxbot.bot.cogs.results import ResultPoster, StatusTarget
from fluxbot.core.requests import (
    ASPECT_PRESETS,
    MAX_COUNT,
    MAX_PROMPT_CHARS,
    SEED_MAX,
    AnimationSpec,
    GenerationRequest,
    JobKind,
    JobStatus,
)
from fluxbot.core.seeds import SeedProfile, next_seed, random_seed
from fluxbot.store.jobs import Origin
from fluxbot.store.models import JobRow, User

if TYPE_CHECKING:
    from fluxbot.app.compose import Draft
    from fluxbot.bot.client import FluxBot

log = logging.getLogger(__name__)

ASPECT_CHOICES = [app_commands.Choice(name=name, value=name) for name in ASPECT_PRESETS]


class Imagine(commands.Cog):
    """Turns commands, buttons and reactions into jobs, and jobs into posted results."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.poster = ResultPoster(bot)
        bot.service.on_finished(self.poster.post)

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
    )
    @app_commands.choices(aspect=ASPECT_CHOICES)
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
    ) -> None:
        user = await self._user(interaction)
        ephemeral = user.private_results if private is None else private
        draft = self.bot.engine.composer.draft(
            prompt,
            negative=negative,
            aspect=aspect.value if aspect else None,
            seed=seed,
            steps=steps,
            count=count,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            strict=not _nsfw(interaction.channel),
        )
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        await self._start(interaction, draft, JobKind.IMAGINE, private=ephemeral)

    @app_commands.command(name="animate", description="A looping GIF morphing between two seeds")
    @app_commands.describe(
        prompt="What to draw",
        frames="Frames in the GIF, 2 to 24",
        seed="Start seed",
        seed_to="End seed (random if not given)",
    )
    async def animate(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        frames: app_commands.Range[int, 2, 24] = 12,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        seed_to: app_commands.Range[int, 0, SEED_MAX] | None = None,
    ) -> None:
        user = await self._user(interaction)
        spec = AnimationSpec(frames=frames, seed_to=random_seed() if seed_to is None else seed_to)
        draft = self.bot.engine.composer.draft(
            prompt,
            seed=seed,
            default_aspect=user.default_aspect,
            default_steps=user.default_steps,
            animation=spec,
            strict=not _nsfw(interaction.channel),
        )
        await interaction.response.defer(thinking=True)
        await self._start(interaction, draft, JobKind.ANIMATE, private=False)

    async def _user(self, interaction: discord.Interaction) -> User:
        """The caller's stored row; refuses banned users and DMs unless allowed."""
        if interaction.guild is None and not self.bot.settings.allow_dms:
            raise UserError("Images can only be made in a server channel here.")
        user = await self.bot.store.users.get_or_create(interaction.user.id)
        if await self.bot.store.bans.is_banned(interaction.user.id, interaction.guild_id):
            raise NotAllowed("You are not allowed to make images with this bot.")
        return user

    async def _seed_for(self, user_id: int, explicit: int | None) -> int:
        if explicit is not None:
            return explicit

        def pick(user: User) -> int:
            return next_seed(SeedProfile.parse(user.seed_profile), user.last_seed)

        return await self.bot.store.users.claim_seed(user_id, pick)

    async def _start(
        self, interaction: discord.Interaction, draft: Draft, kind: JobKind, *, private: bool
    ) -> None:
        request = draft.finish(await self._seed_for(interaction.user.id, draft.seed))
        origin = Origin(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            interaction_id=interaction.id,
            application_id=interaction.application_id,
        )
        submission = await self.bot.service.submit(
            interaction.user.id, request, kind=kind, origin=origin, want_preview=True
        )
        job_id = submission.row.public_id
        self.bot.live.interactions[job_id] = interaction
        self.bot.live.upload_limits[job_id] = interaction.filesize_limit
        self.bot.live.notices[job_id] = draft.notices
        place = submission.place
        text = (
            presenters.queued_text(job_id, place.position, place.eta_s)
            if place
            else f"🎨 `{job_id}` is starting…"
        )
        if draft.notices:
            text += "\n" + "\n".join(f"ℹ️ {n}" for n in draft.notices)
        await interaction.edit_original_response(content=text)
        original = await interaction.original_response()
        await self.bot.store.jobs.set_messages(submission.row.id, status_message_id=original.id)
        self.poster.track(submission.handle, StatusTarget(interaction=interaction), private=private)

    # -- controls -----------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        try:
            row = await self.bot.store.jobs.by_public_id(job_id)
            if row is None:
                raise UserError(f"Job `{job_id}` no longer exists.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            permissions = interaction.permissions if interaction.guild else None
            message = await self.act(
                action, row, interaction.user.id, permissions, interaction.message
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
        permissions = payload.member.guild_permissions if payload.member else None
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            await self.act(
                action,
                row,
                payload.user_id,
                permissions,
                channel.get_partial_message(payload.message_id),
            )
        except (UserError, app_commands.AppCommandError, ValueError) as exc:
            log.info("reaction %s on job %s refused: %s", action, row.public_id, exc)
        except Exception:
            log.exception("reaction %s on job %s failed", action, row.public_id)

    async def act(
        self,
        action: str,
        row: JobRow,
        user_id: int,
        permissions: discord.Permissions | None,
        message: discord.Message | discord.PartialMessage | None,
    ) -> str:
        """Run 🔁 / 🎲 / ❌ for `user_id` on job `row`; returns what to tell the user."""
        if action == "cancel":
            return await self._cancel_or_delete(row, user_id, permissions, message)
        if await self.bot.store.bans.is_banned(user_id, row.guild_id):
            raise NotAllowed("You are not allowed to make images with this bot.")
        request = GenerationRequest.from_params(row.params)
        if action == "reroll":
            kind = JobKind.REROLL
        else:
            kind = JobKind.VARIATION
            request = replace(request, seed=random_seed())
        origin = Origin(guild_id=row.guild_id, channel_id=row.channel_id)
        submission = await self.bot.service.submit(
            user_id, request, kind=kind, origin=origin, parent_id=row.id
        )
        reply_to = None
        if message is not None and row.result_message_id == message.id:
            channel = self.bot.get_partial_messageable(message.channel.id, guild_id=row.guild_id)
            reply_to = channel.get_partial_message(message.id)
        self.poster.track(submission.handle, StatusTarget(), reply_to=reply_to)
        place = submission.place
        verb = "Rerolling with the same seed" if kind is JobKind.REROLL else "New seed"
        where = f", position {place.position}" if place else ""
        return f"{verb}: job `{submission.row.public_id}` (seed {request.seed}{where})."

    async def _cancel_or_delete(
        self,
        row: JobRow,
        user_id: int,
        permissions: discord.Permissions | None,
        message: discord.Message | discord.PartialMessage | None,
    ) -> str:
        if user_id != row.user_id and not is_admin_id(self.bot, user_id, permissions):
            raise NotAllowed("Only the person who asked for this image (or an admin) can do that.")
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


def _nsfw(channel: object) -> bool:
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(JobButton)
    await bot.add_cog(Imagine(bot))
