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

from fluxbot.app.style_samples import StyleSamples
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import result_view
from fluxbot.bot.delivery import RetryPolicy, describe, nonce_for, with_retries
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
# Looking for a followup that may have arrived: from this long before the first attempt (clocks
# differ between here and Discord).
CLOCK_SLACK = timedelta(minutes=1)


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
        retry: RetryPolicy,
    ) -> None:
        self.client = client
        self.store = store
        self.service = service
        self.live = live
        self.samples = samples
        self.retry = retry
        # Jobs being posted right now (a redelivery must not post them a second time).
        self.posting: set[str] = set()

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
                # The ignore below: only progress events with a preview reach this branch.
                event.preview.save(buffer, format="PNG")  # type: ignore[union-attr]
                preview = buffer.getvalue()
            await target.edit(presenters.status_text(handle.job_id, event), preview)

    async def post(self, row: JobRow, outcome: JobOutcome | None) -> None:
        """The service calls this once the job's final state and images are stored; at start,
        `redeliver` calls it (without an outcome) for results an earlier run could not post."""
        if row.channel_id is None:
            # Made in the web studio or the CLI (no Discord channel): the studio shows it.
            await self.store.jobs.mark_delivered(row.id)
            return
        live = self.live.pop(row.public_id) or LiveJob(row.public_id, private=row.private)
        self.posting.add(row.public_id)
        try:
            await self._post(row, outcome, live)
        except Exception as exc:
            log.warning("the result of job %s is undelivered: %s", row.public_id, describe(exc))
            log.debug("posting job %s failed", row.public_id, exc_info=True)
            await self.store.jobs.mark_undelivered(row.id, describe(exc))
            text = (
                f"⚠️ `{row.public_id}` is done, but posting it failed; `/show {row.public_id}` "
                "posts it."
            )
            with contextlib.suppress(Exception):
                await self._send(row, None, None, live.private, text=text)
        finally:
            self.posting.discard(row.public_id)

    async def redeliver(self) -> int:
        """Post what an earlier run finished but could not deliver (oldest first)."""
        pending = [
            row for row in await self.store.jobs.undelivered() if row.public_id not in self.posting
        ]
        for row in pending:
            log.info("posting job %s, left undelivered by an earlier run", row.public_id)
            await self.post(row, None)
        return len(pending)

    async def _post(self, row: JobRow, outcome: JobOutcome | None, live: LiveJob) -> None:
        job_id = row.public_id
        target = live.status
        status = outcome.status if outcome is not None else row.status
        if row.status is JobStatus.CANCELLED or status is JobStatus.CANCELLED:
            await target.edit(presenters.cancelled_text(job_id))
            return
        if row.status is not JobStatus.DONE:
            text = presenters.failure_text(
                job_id, row.error or (outcome.error if outcome is not None else None)
            )
            if target.interaction is not None or target.message is not None:
                await target.edit(text)
            else:
                await self._send(row, live.interaction, None, live.private, text=text)
            return
        images = await self.store.read_images(row)
        policy = await self.store.guilds.get(row.guild_id)
        in_dm = row.private and not _usable(live.interaction, live.reply_to)
        routes = presenters.routes_for(
            row, policy.safety_policy, age_restricted_channel=row.age_restricted and not in_dm
        )
        uploads, notes = presenters.routed_uploads(row, images, live.upload_limit, routes)
        notices = list(live.notices)
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
            row,
            live.interaction,
            live.reply_to,
            live.private,
            embed=embed,
            uploads=uploads,
            view=result_view(row),
        )
        await self.store.jobs.mark_delivered(row.id)
        await self.store.jobs.set_messages(row.id, result_message_id=message.id)
        await target.remove()
        style = row.params.get("style")
        if style and not live.private and images and images[0].format == "png":
            # A public result becomes its style's sample for /styles (private ones never do).
            await asyncio.to_thread(self.samples.offer, style, images[0].data)
        if not live.private and message.channel is not None and not message.flags.ephemeral:
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
        elif row.kind is JobKind.EDIT:
            mention += f" {presenters.lineage(row)}"
        content = f"{mention} {text}".strip()
        extra: dict[str, object] = {}
        if embed is not None:
            extra["embed"] = embed
        if view is not None:
            extra["view"] = view
        nonce = nonce_for(row.public_id) if uploads or embed else None
        if _usable(interaction, reply_to):
            assert interaction is not None
            since = discord.utils.time_snowflake(datetime.now(UTC) - CLOCK_SLACK)
            try:
                return await with_retries(
                    # The ignore below: discord.py's send overloads cannot see the keys of **extra.
                    lambda: interaction.followup.send(  # type: ignore[call-overload]
                        content=content,
                        wait=True,
                        ephemeral=private,
                        files=presenters.files(uploads),
                        **extra,
                    ),
                    self.retry,
                    what=f"posting job {row.public_id} as a followup",
                    # A followup takes no nonce; an ephemeral one cannot be looked for either.
                    landed=None
                    if private or nonce is None
                    else lambda: self._posted_followup(row, interaction, since),
                )
            except discord.HTTPException as exc:
                # An expired or revoked token: the bot token still reaches the channel or DM.
                log.info(
                    "followup for job %s failed (%s); posting with the bot token",
                    row.public_id,
                    describe(exc),
                )
        if private or row.channel_id is None:
            client = self.client
            user = client.get_user(row.user_id) or await client.fetch_user(row.user_id)
            return await with_retries(
                # The ignore below: discord.py's send overloads cannot see the keys of **extra.
                lambda: user.send(  # type: ignore[call-overload]
                    content=text or None, files=presenters.files(uploads), nonce=nonce, **extra
                ),
                self.retry,
                what=f"sending job {row.public_id} by DM",
            )
        channel = self.client.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
        return await with_retries(
            # The ignore below: discord.py's send overloads cannot see the keys of **extra.
            lambda: channel.send(  # type: ignore[call-overload]
                content=content,
                reference=reply_to,
                mention_author=False,
                files=presenters.files(uploads),
                nonce=nonce,
                **extra,
            ),
            self.retry,
            what=f"posting job {row.public_id} in its channel",
        )

    async def _posted_followup(
        self, row: JobRow, interaction: discord.Interaction, since: int
    ) -> discord.Message | None:
        """The job's result if an earlier attempt did reach the channel: a message answering
        this interaction, posted after `since`, that names the job."""
        assert row.channel_id is not None
        channel = self.client.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
        async for message in channel.history(limit=100, after=discord.Object(since)):
            meta = message.interaction_metadata
            if meta is not None and meta.id == interaction.id and _names(message, row.public_id):
                return message
        return None


def _names(message: discord.Message, public_id: str) -> bool:
    """Whether the message carries job `public_id`'s result: its embed or its files name the
    job (the status line, which answers the same interaction, only mentions it in its text)."""
    return any(public_id in str(embed.to_dict()) for embed in message.embeds) or any(
        public_id in a.filename for a in message.attachments
    )


def _usable(
    interaction: discord.Interaction | None, reply_to: discord.PartialMessage | None
) -> bool:
    """Whether the result goes through the interaction's webhook (fresh, and not a reply)."""
    return interaction is not None and fresh(interaction) and reply_to is None
