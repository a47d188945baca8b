"""Following a job in Discord: throttled status edits while it waits and runs, then the result.

Where things are posted:
- the status of an /imagine is the interaction's own response, edited at most every ~1.5 s;
- the result is a followup of that interaction while its token is fresh (< 14 min), otherwise a
  channel message sent with the bot token that mentions the user (also after a restart);
- rerolls and new seeds reply to the result they came from (a channel message);
- private results go to an ephemeral followup, or by DM once the token has expired;
- every post is retried on transient failures (fluxbot.bot.delivery); a result that still
  cannot be posted is marked undelivered, posted again at the next start, and `/show` posts it;
- images the safety check flagged go out as spoilers or are withheld, as the server says.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import discord

from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import result_view
from fluxbot.bot.delivery import RetryPolicy, describe, nonce_for, with_retries
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
    """Tracks live jobs' progress and posts every finished job, live, recovered or left
    undelivered by an earlier run."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.status: dict[str, StatusTarget] = {}
        self.reply_to: dict[str, discord.PartialMessage] = {}
        # Jobs being posted right now (a redelivery must not post them a second time).
        self.posting: set[str] = set()
        self.retry = RetryPolicy(
            attempts=bot.settings.delivery_attempts,
            timeout_s=bot.settings.delivery_timeout_s,
            first_delay_s=bot.settings.delivery_backoff_s,
        )

    def track(
        self,
        handle: JobHandle,
        target: StatusTarget,
        *,
        reply_to: discord.PartialMessage | None = None,
    ) -> None:
        """Edit `target` as the job moves; the result itself comes through `post`."""
        job_id = handle.job_id
        self.status[job_id] = target
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

    async def post(self, row: JobRow, outcome: JobOutcome | None) -> None:
        """The service calls this once the job's final state and images are stored; at start,
        `redeliver` calls it (without an outcome) for results an earlier run could not post."""
        self.posting.add(row.public_id)
        try:
            await self._post(row, outcome)
        except Exception as exc:
            log.warning("the result of job %s is undelivered: %s", row.public_id, describe(exc))
            log.debug("posting job %s failed", row.public_id, exc_info=True)
            await self.bot.store.jobs.mark_undelivered(row.id, describe(exc))
            text = (
                f"⚠️ `{row.public_id}` is done, but posting it failed; `/show {row.public_id}` "
                "posts it."
            )
            with contextlib.suppress(Exception):
                await self._send(row, None, None, text=text)
        finally:
            self.posting.discard(row.public_id)

    async def redeliver(self) -> int:
        """Post what an earlier run finished but could not deliver (oldest first)."""
        pending = [
            row
            for row in await self.bot.store.jobs.undelivered()
            if row.public_id not in self.posting
        ]
        for row in pending:
            log.info("posting job %s, left undelivered by an earlier run", row.public_id)
            await self.post(row, None)
        return len(pending)

    async def _post(self, row: JobRow, outcome: JobOutcome | None) -> None:
        job_id = row.public_id
        target = self.status.pop(job_id, None)
        reply_to = self.reply_to.pop(job_id, None)
        interaction = self.bot.live.interactions.pop(job_id, None)
        limit = self.bot.live.upload_limits.pop(job_id, DEFAULT_UPLOAD_LIMIT)
        notices = list(self.bot.live.notices.pop(job_id, ()))
        status = outcome.status if outcome is not None else row.status
        if row.status is JobStatus.CANCELLED or status is JobStatus.CANCELLED:
            if target is not None:
                await target.edit(presenters.cancelled_text(job_id))
            return
        if row.status is not JobStatus.DONE:
            text = presenters.failure_text(job_id, row.error or (outcome and outcome.error))
            if target is not None:
                await target.edit(text)
            else:
                await self._send(row, interaction, None, text=text)
            return
        images = presenters.load_stored(row, self.bot.store.data_dir)
        policy = await self.bot.store.guilds.get(row.guild_id)
        in_dm = row.channel_id is None or (row.private and not _usable(interaction, reply_to))
        routes = presenters.routes_for(
            row, policy.safety_policy, age_restricted_channel=row.age_restricted and not in_dm
        )
        uploads, notes = presenters.routed_uploads(row, images, limit, routes)
        if outcome is not None:
            device_s = (
                outcome.timings.denoise + outcome.timings.decode + outcome.timings.text_encode
            )
            if outcome.result is not None:
                notices.extend(outcome.result.notes)
        else:
            device_s = sum(
                (row.timings or {}).get(k, 0.0) for k in ("text_encode", "denoise", "decode")
            )
        embed = presenters.result_embed(row, images, device_s, [*notices, *notes])
        message = await self._send(
            row, interaction, reply_to, embed=embed, uploads=uploads, view=result_view(row)
        )
        await self.bot.store.jobs.mark_delivered(row.id)
        await self.bot.store.jobs.set_messages(row.id, result_message_id=message.id)
        if target is not None:
            await target.remove()
        if not row.private and message.channel is not None and not message.flags.ephemeral:
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
        *,
        text: str = "",
        embed: discord.Embed | None = None,
        uploads: Sequence[presenters.Upload] = (),
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        """Post where the job belongs, retrying transient failures; raises if it never got
        there. Private jobs go to an ephemeral followup while the interaction lives, else by
        DM; public ones to the followup, or to the channel (replying to `reply_to`)."""
        mention = f"<@{row.user_id}>"
        if row.kind is JobKind.REROLL:
            mention += " 🔁 same seed"
        elif row.kind is JobKind.VARIATION:
            mention += " 🎲 new seed"
        content = f"{mention} {text}".strip()
        extra: dict[str, object] = {}
        if embed is not None:
            extra["embed"] = embed
        if view is not None:
            extra["view"] = view
        if _usable(interaction, reply_to):
            assert interaction is not None
            try:
                return await with_retries(
                    lambda: interaction.followup.send(  # type: ignore[call-overload]
                        content=content,
                        wait=True,
                        ephemeral=row.private,
                        files=presenters.files(uploads),
                        **extra,
                    ),
                    self.retry,
                    what=f"posting job {row.public_id} as a followup",
                )
            except discord.HTTPException as exc:
                # An expired or revoked token: the bot token still reaches the channel or DM.
                log.info(
                    "followup for job %s failed (%s); posting with the bot token",
                    row.public_id,
                    describe(exc),
                )
        if row.private or row.channel_id is None:
            user = self.bot.get_user(row.user_id) or await self.bot.fetch_user(row.user_id)
            return await with_retries(
                lambda: user.send(  # type: ignore[call-overload]
                    content=text or None, files=presenters.files(uploads), **extra
                ),
                self.retry,
                what=f"sending job {row.public_id} by DM",
            )
        channel = self.bot.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
        return await with_retries(
            lambda: channel.send(  # type: ignore[call-overload]
                content=content,
                reference=reply_to,
                mention_author=False,
                files=presenters.files(uploads),
                nonce=nonce_for(row.public_id) if uploads or embed else None,
                **extra,
            ),
            self.retry,
            what=f"posting job {row.public_id} in its channel",
        )


def _usable(
    interaction: discord.Interaction | None, reply_to: discord.PartialMessage | None
) -> bool:
    """Whether the result goes through the interaction's webhook (fresh, and not a reply)."""
    return interaction is not None and _fresh(interaction) and reply_to is None
