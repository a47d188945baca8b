"""What this process knows of the jobs it follows in Discord, one record per job id.

The store holds the durable part of a job; this is what only lives in memory: the interaction
that asked for it, where its status line is, where its result goes, and the task that follows it.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import discord

from fluxbot.engine.encoding import DEFAULT_UPLOAD_LIMIT

log = logging.getLogger(__name__)

# Interaction tokens live 15 minutes; past this age the bot token is used instead.
TOKEN_SAFE_AGE = timedelta(minutes=14)


def fresh(interaction: discord.Interaction) -> bool:
    """Whether the interaction's token can still be used (with a minute to spare)."""
    return datetime.now(UTC) - interaction.created_at < TOKEN_SAFE_AGE


class StatusTarget:
    """Where a job's status line lives: the interaction's response while its token is fresh,
    else the same message through the bot token (after 14 minutes, or after a restart)."""

    def __init__(
        self,
        interaction: discord.Interaction | None = None,
        message: discord.Message | discord.PartialMessage | None = None,
    ) -> None:
        self.interaction = interaction
        self.message = message

    async def edit(self, content: str, preview: bytes | None = None) -> None:
        attachments = [discord.File(io.BytesIO(preview), "preview.png")] if preview else []
        try:
            if self.interaction is not None and fresh(self.interaction):
                await self.interaction.edit_original_response(
                    content=content, attachments=attachments
                )
            elif self.message is not None:
                await self.message.edit(content=content, attachments=attachments)
        except discord.HTTPException as exc:
            log.debug("status edit failed: %s", exc)

    async def remove(self) -> None:
        try:
            if self.interaction is not None and fresh(self.interaction):
                await self.interaction.delete_original_response()
            elif self.message is not None:
                await self.message.delete()
        except discord.HTTPException as exc:
            log.debug("status delete failed: %s", exc)


@dataclass(slots=True)
class LiveJob:
    """One followed job: its status line, the interaction that asked for it, and its options."""

    job_id: str
    status: StatusTarget = field(default_factory=StatusTarget)
    interaction: discord.Interaction | None = None
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    notices: tuple[str, ...] = ()
    private: bool = False
    reply_to: discord.PartialMessage | None = None
    tracker: asyncio.Task[None] | None = None


class LiveJobs:
    """The registry of followed jobs, keyed by job id; a job leaves it when its result is posted."""

    def __init__(self) -> None:
        self._jobs: dict[str, LiveJob] = {}

    def add(self, job: LiveJob) -> LiveJob:
        self._jobs[job.job_id] = job
        return job

    def get(self, job_id: str) -> LiveJob | None:
        return self._jobs.get(job_id)

    def pop(self, job_id: str) -> LiveJob | None:
        return self._jobs.pop(job_id, None)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def trackers(self) -> list[asyncio.Task[None]]:
        """The follow tasks still running (cancelled when the bot closes)."""
        return [j.tracker for j in self._jobs.values() if j.tracker and not j.tracker.done()]
