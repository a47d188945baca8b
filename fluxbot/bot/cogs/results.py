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
from typing import TYPE_CHECKING

import discord

from fluxbot.app.style_samples import StyleSamples
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import result_view
from fluxbot.bot.live import LiveJob, StatusTarget, fresh
from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.serving.events import FinishedEvent
from fluxbot.serving.job import JobOutcome
from fluxbot.store.models import JobRow

if TYPE_CHECKING:
    from fluxbot.app.service import JobService
    from fluxbot.bot.live import LiveJobs
    from fluxbot.serving.handle import JobHandle
    from fluxbot.store import Store

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.5


class ResultPoster:
    """Follows jobs' progress in their status lines and posts every finished job, live or
    recovered after a restart; what it knows of each job is one `LiveJob` in `bot.live`."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        service: JobService,
        live: LiveJobs,
        samples: StyleSamples,
    ) -> None:
        self.client = client
        self.store = store
        self.service = service
        self.live = live
        self.samples = samples

    def follow(self, handle: JobHandle, live: LiveJob) -> None:
        """Register the job and edit its status line as it moves; the result comes via `post`.

        A job already finished is left alone: `post` has it (or has posted it) already.
        """
        if handle.done:
            return
        self.live.add(live)
        live.tracker = asyncio.create_task(
            self._follow(handle, live.status), name=f"track-{handle.job_id}"
        )

    def follow_recovered(self, row: JobRow) -> None:
        """A job requeued at start: its status message (sent before the restart) follows it."""
        handle = self.service.handle(row.public_id)
        if handle is None:
            return
        message = None
        if row.status_message_id is not None and row.channel_id is not None:
            channel = self.client.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
            message = channel.get_partial_message(row.status_message_id)
        self.follow(handle, LiveJob(row.public_id, status=StatusTarget(message=message)))

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
        live = self.live.pop(row.public_id) or LiveJob(row.public_id)
        try:
            await self._post(row, outcome, live)
        except Exception:
            log.exception("posting the result of job %s failed", row.public_id)
            text = (
                f"⚠️ `{row.public_id}` is done, but posting it failed; `/show {row.public_id}` "
                "tries again."
            )
            await self._send(row, None, None, live.private, text=text)

    async def _post(self, row: JobRow, outcome: JobOutcome, live: LiveJob) -> None:
        job_id = row.public_id
        target = live.status
        if row.status is JobStatus.CANCELLED or outcome.status is JobStatus.CANCELLED:
            await target.edit(presenters.cancelled_text(job_id))
            return
        if row.status is not JobStatus.DONE:
            text = presenters.failure_text(job_id, row.error or outcome.error)
            if target.interaction is not None or target.message is not None:
                await target.edit(text)
            else:
                await self._send(row, live.interaction, None, live.private, text=text)
            return
        images = await self.store.read_images(row)
        files, notes = presenters.upload_files(row, images, live.upload_limit)
        device_s = outcome.timings.denoise + outcome.timings.decode + outcome.timings.text_encode
        notices = list(live.notices)
        if outcome.result is not None:
            notices.extend(outcome.result.notes)
        embed = presenters.result_embed(row, images, device_s, [*notices, *notes])
        message = await self._send(
            row,
            live.interaction,
            live.reply_to,
            live.private,
            embed=embed,
            files=files,
            view=result_view(row),
        )
        if message is None:
            return
        await self.store.jobs.set_messages(row.id, result_message_id=message.id)
        await target.remove()
        style = row.params.get("style")
        if style and not live.private and images and images[0].format == "png":
            # A public result becomes its style's sample for /styles (private ones never do).
            await asyncio.to_thread(self.samples.offer, style, images[0].data)
        if not live.private and message.channel is not None:
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
        elif row.kind is JobKind.EDIT:
            mention += f" {presenters.lineage(row)}"
        content = f"{mention} {text}".strip()
        if interaction is not None and fresh(interaction) and reply_to is None:
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
                client = self.client
                user = client.get_user(row.user_id) or await client.fetch_user(row.user_id)
                return await user.send(content=text or None, **kwargs)  # type: ignore[arg-type]
            channel = self.client.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
            return await channel.send(  # type: ignore[call-overload]
                content=content, reference=reply_to, mention_author=False, **kwargs
            )
        except discord.HTTPException:
            log.exception("could not post the result of job %s", row.public_id)
            return None
