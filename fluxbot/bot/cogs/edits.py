"""Buttons that start from a result's image: Vary (Subtle/Strong), Remix (a modal), Upscale ×2,
Zoom out ×1.5/×2, Pan ⬅️➡️⬆️⬇️, and U1..U4 / V1..V4 under a result of several images.

Restart-proof: each button is a `DynamicItem` whose custom id carries the operation, the job
and the image (`flux:img:vary1:abc123:0`), and the remix modal's submission is handled by a
listener that reads its custom id (`flux:remix:abc123:0`), so neither needs the process that
posted it. The job itself is made by `fluxbot.app.derive` (permissions, lineage, privacy).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from fluxbot.app.derived_jobs import DerivedJobs
from fluxbot.app.permissions import can_reuse_job, require
from fluxbot.bot.actors import actor_of, is_age_restricted, requester_of
from fluxbot.bot.cogs.controls import OPERATIONS, ImageButton
from fluxbot.bot.cogs.errors import send_error
from fluxbot.bot.live import LiveJob
from fluxbot.core.edits import REMIX_STRENGTH, Operation, check_strength
from fluxbot.core.errors import UserError
from fluxbot.core.requests import RequestError
from fluxbot.store.jobs import Origin
from fluxbot.store.models import JobRow

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

log = logging.getLogger(__name__)

REMIX_ID = re.compile(r"flux:remix:(?P<job>[0-9A-Za-z]{4,16}):(?P<index>[0-3])")
TEXT_INPUT_MAX = 4000  # Discord's limit for one text input


class RemixModal(discord.ui.Modal):
    """The remix form: the prompt prefilled, a strength, and where to start from. Its
    submission is handled by `ImageOps.on_interaction` (restart-proof), not here."""

    def __init__(self, row: JobRow, index: int) -> None:
        super().__init__(title="Remix", custom_id=f"flux:remix:{row.public_id}:{index}")
        self.add_item(
            discord.ui.TextInput(
                label="Prompt",
                custom_id="prompt",
                style=discord.TextStyle.paragraph,
                default=row.prompt[:TEXT_INPUT_MAX],
                max_length=TEXT_INPUT_MAX,
            )
        )
        self.add_item(
            discord.ui.TextInput(
                label="Strength, 0.05 to 1.0 (how much may change)",
                custom_id="strength",
                default=f"{REMIX_STRENGTH:g}",
                required=False,
                max_length=8,
            )
        )
        self.add_item(
            discord.ui.TextInput(
                label="Start from: image, or scratch (same seed)",
                custom_id="start",
                default="image",
                max_length=8,
            )
        )


def _modal_values(data: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    stack = list(data.get("components") or [])
    while stack:
        component = stack.pop()
        stack.extend(component.get("components") or [])
        if "component" in component:  # a label wrapping its input
            stack.append(component["component"])
        if "custom_id" in component and "value" in component:
            values[component["custom_id"]] = str(component["value"])
    return values


class ImageOps(commands.Cog):
    """Turns the image buttons and the remix form into jobs made from a result."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.derived = DerivedJobs(bot.store, bot.service, bot.engine.deriver)

    async def _parent(self, job_id: str) -> JobRow:
        row = await self.bot.store.jobs.by_public_id(job_id)
        if row is None:
            raise UserError(f"Job `{job_id}` no longer exists.")
        return row

    @staticmethod
    def _require_reuse(interaction: discord.Interaction, row: JobRow) -> None:
        """The permission model's rule for making a new image from a job (private: its owner or
        a manager of its server; age-restricted: only in such a channel)."""
        nsfw = is_age_restricted(interaction.channel)
        require(can_reuse_job(actor_of(interaction), row, age_restricted_channel=nsfw))

    async def on_button(
        self, interaction: discord.Interaction, op: str, job_id: str, index: int
    ) -> None:
        try:
            row = await self._parent(job_id)
            if op == "remix":
                # A modal must be the first answer: check who may use the job before opening it.
                self._require_reuse(interaction, row)
                await interaction.response.send_modal(RemixModal(row, index))
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            _label, _emoji, operation, options = OPERATIONS[op]
            message = await self.submit(interaction, row, operation, index, **options)
            await interaction.followup.send(message, ephemeral=True)
        except Exception as exc:  # buttons have no tree error handler
            await send_error(interaction, exc)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Remix forms, whenever they were opened (the modal object may predate a restart)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        # The ignore below: a modal submission's data, read as a plain dict.
        data: dict[str, Any] = interaction.data or {}  # type: ignore[assignment]
        match = REMIX_ID.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        try:
            values = _modal_values(data)
            start = values.get("start", "image").strip().lower()
            if start not in ("image", "scratch"):
                raise RequestError("start from", values.get("start"), "image or scratch")
            strength_text = values.get("strength", "").strip()
            strength = check_strength(strength_text) if strength_text else None
            await interaction.response.defer(ephemeral=True, thinking=True)
            row = await self._parent(match["job"])
            message = await self.submit(
                interaction,
                row,
                Operation.REMIX,
                int(match["index"]),
                prompt=values.get("prompt") or row.prompt,
                strength=strength,
                from_scratch=start == "scratch",
            )
            await interaction.followup.send(message, ephemeral=True)
        except Exception as exc:
            await send_error(interaction, exc)

    async def submit(
        self,
        interaction: discord.Interaction,
        row: JobRow,
        operation: Operation,
        index: int,
        **options: Any,
    ) -> str:
        """Make and queue the job (fluxbot.app.derived_jobs: the permission model, the server's
        policy, lineage and privacy); returns what to tell the user."""
        origin = Origin(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            interaction_id=interaction.id,
            application_id=interaction.application_id,
        )
        derived = await self.derived.edit(
            actor_of(interaction),
            requester_of(interaction),
            row,
            operation,
            index=index,
            origin=origin,
            want_preview=True,
            **options,
        )
        child = derived.row
        live = LiveJob(child.public_id, private=child.private)
        message = interaction.message
        if child.private:
            # Private: the result goes to this interaction's ephemeral followup (or by DM).
            live.interaction = interaction
            live.upload_limit = interaction.filesize_limit
        elif message is not None and row.result_message_id == message.id:
            channel = self.bot.get_partial_messageable(message.channel.id, guild_id=row.guild_id)
            live.reply_to = channel.get_partial_message(message.id)
        self.bot.poster.follow(derived.submission.handle, live)
        return derived.describe()


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(ImageButton)
    await bot.add_cog(ImageOps(bot))
