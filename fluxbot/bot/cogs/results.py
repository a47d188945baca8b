"""Following a job in Discord: throttled status edits while it waits and runs, then the result.

Where things are posted:
- the status of an /imagine is the interaction's own response, edited at most every ~1.5 s;
- the result is a followup of that interaction while its token is fresh (< 14 min), otherwise a
  channel message sent with the bot token that mentions the user (also after a restart);
- rerolls and new seeds reply to the result they came from (a channel message);
- private results go to an ephemeral followup, or by DM once the token has expired.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import discord

from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import result_view
from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.engine.encoding import DEFAULT_UPLOAD_LIMIT
from fluxbot.serving.events import FinishedEvent
from fluxbot.serving.job import JobOutcome
from fluxbot.store.models import JobRow

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot
    from fluxbot.serving.handle import JobHandle

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.5
TOKEN_SAFE_AGE = timedelta(minutes=14)


class StatusTarget:
    """Where a job's status line lives: an interaction response or a plain channel message."""

    def __init__(
        self,
        interaction: discord.Interaction | None = None,
        message: discord.Message | None = None,
    ) -> None:
        self.interaction = interaction
        self.message = message

    async def edit(self, content: str, preview: bytes | None = None) -> None:
        attachments = [discord.File(io.BytesIO(preview), "preview.png")] if preview else []
        try:
            if self.interaction is not None and _fresh(self.interaction):
                await self.interaction.edit_original_response(
                    content=content, attachments=attachments
                )
            elif self.message is not None:
                await self.message.edit(content=content, attachments=attachments)
        except discord.HTTPException as exc:
            log.debug("status edit failed: %s", exc)

    async def remove(self) -> None:
        try:
            if self.interaction is not None and _fresh(self.interaction):
                await self.interaction.delete_original_response()
            elif self.message is not None:
                await self.message.delete()
        except discord.HTTPException as exc:
            log.debug("status delete failed: %s", exc)


def _fresh(interaction: discord.Interaction) -> bool:
    return datetime.now(UTC) - interaction.created_at < TOKEN_SAFE_AGE


class ResultPoster:
    """Tracks live jobs' progress and posts every finished job, live or recovered."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.status: dict[str, StatusTarget] = {}
        self.reply_to: dict[str, discord.PartialMessage] = {}
        self.private: dict[str, bool] = {}

    def track(
        self,
        handle: JobHandle,
        target: StatusTarget,
        *,
        private: bool = False,
        reply_to: discord.PartialMessage | None = None,
    ) -> None:
        """Edit `target` as the job moves; the result itself comes through `post`."""
        job_id = handle.job_id
        self.status[job_id] = target
        self.private[job_id] = private
        if reply_to is not None:
            self.reply_to[job_id] = reply_to
        task = asyncio.create_task(self._follow(handle, target), name=f"track-{job_id}")
        self.bot.live.trackers[job_id] = task
        task.add_done_callback(lambda _t: self.bot.live.trackers.pop(job_id, None))

    async def _follow(self, handle: JobHandle, target: StatusTarget) -> None:
        async for event in handle.events(min_interval_s=EDIT_INTERVAL_S):
            if isinstance(event, FinishedEvent):
                return
            preview = None
            if getattr(event, "preview", None) is not None:
                buffer = io.BytesIO()
                event.preview.save(buffer, format="PNG")  # type: ignore[union-attr]
                preview = buffer.getvalue()
            await target.edit(presenters.status_text(handle.job_id, event), preview)

    async def post(self, row: JobRow, outcome: JobOutcome) -> None:
        """The service calls this once the job's final state and images are stored."""
        if row.channel_id is None:
            return  # made in the web studio (no Discord channel): the studio shows it
        try:
            await self._post(row, outcome)
        except Exception:
            log.exception("posting the result of job %s failed", row.public_id)
            text = (
                f"⚠️ `{row.public_id}` is done, but posting it failed; `/show {row.public_id}` "
                "tries again."
            )
            await self._send(row, None, None, self.private.pop(row.public_id, False), text=text)

    async def _post(self, row: JobRow, outcome: JobOutcome) -> None:
        job_id = row.public_id
        target = self.status.pop(job_id, None)
        reply_to = self.reply_to.pop(job_id, None)
        private = self.private.pop(job_id, False)
        interaction = self.bot.live.interactions.pop(job_id, None)
        limit = self.bot.live.upload_limits.pop(job_id, DEFAULT_UPLOAD_LIMIT)
        notices = list(self.bot.live.notices.pop(job_id, ()))
        if row.status is JobStatus.CANCELLED or outcome.status is JobStatus.CANCELLED:
            if target is not None:
                await target.edit(presenters.cancelled_text(job_id))
            return
        if row.status is not JobStatus.DONE:
            text = presenters.failure_text(job_id, row.error or outcome.error)
            if target is not None:
                await target.edit(text)
            else:
                await self._send(row, interaction, None, private, text=text)
            return
        images = presenters.load_stored(row, self.bot.store.data_dir)
        files, notes = presenters.upload_files(row, images, limit)
        device_s = outcome.timings.denoise + outcome.timings.decode + outcome.timings.text_encode
        if outcome.result is not None:
            notices.extend(outcome.result.notes)
        embed = presenters.result_embed(row, images, device_s, [*notices, *notes])
        message = await self._send(
            row, interaction, reply_to, private, embed=embed, files=files, view=result_view(row)
        )
        if message is None:
            return
        await self.bot.store.jobs.set_messages(row.id, result_message_id=message.id)
        if target is not None:
            await target.remove()
        if not private and message.channel is not None:
            for emoji in presenters.CONTROL_EMOJIS:
                try:
                    await message.add_reaction(emoji)
                except discord.HTTPException:
                    break

    async def _send(
        self,
        row: JobRow,
        interaction: discord.Interaction | None,
        reply_to: discord.PartialMessage | None,
        private: bool,
        text: str = "",
        **kwargs: object,
    ) -> discord.Message | None:
        mention = f"<@{row.user_id}>"
        if row.kind is JobKind.REROLL:
            mention += " 🔁 same seed"
        elif row.kind is JobKind.VARIATION:
            mention += " 🎲 new seed"
        content = f"{mention} {text}".strip()
        if interaction is not None and _fresh(interaction) and reply_to is None:
            try:
                return await interaction.followup.send(  # type: ignore[call-overload]
                    content=content, wait=True, ephemeral=private, **kwargs
                )
            except discord.HTTPException as exc:
                # An expired or revoked token: the bot token still reaches the channel.
                log.info(
                    "followup for job %s failed (%s); posting with the bot token",
                    row.public_id,
                    exc.status,
                )
                for file in kwargs.get("files", ()):  # type: ignore[attr-defined]
                    file.reset()
        try:
            if private or row.channel_id is None:
                user = self.bot.get_user(row.user_id) or await self.bot.fetch_user(row.user_id)
                return await user.send(content=text or None, **kwargs)  # type: ignore[arg-type]
            channel = self.bot.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
            return await channel.send(  # type: ignore[call-overload]
                content=content, reference=reply_to, mention_author=False, **kwargs
            )
        except discord.HTTPException:
            log.exception("could not post the result of job %s", row.public_id)
            return None
