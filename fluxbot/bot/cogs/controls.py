"""Buttons under a result that keep working after a restart: the custom id carries the job id.

A press is handed to whichever loaded cog is named `JOB_ACTIONS_COG` (the Imagine cog) or
`IMAGE_ACTIONS_COG` (the image operations, cogs/edits.py), through the `JobActions` and
`ImageActions` protocols, so this module depends on no cog.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import discord
from discord.ext import commands

from fluxbot.app.derived_jobs import IMAGE_ACTIONS
from fluxbot.bot.cogs.presenters import CANCEL, NEW_SEED, REROLL
from fluxbot.core.edits import Operation
from fluxbot.store.models import JobRow

JOB_ACTIONS_COG = "Imagine"
IMAGE_ACTIONS_COG = "ImageOps"

ACTIONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": (REROLL, "Same seed", discord.ButtonStyle.secondary),
    "new": (NEW_SEED, "New seed", discord.ButtonStyle.secondary),
    "cancel": (CANCEL, "Cancel / delete", discord.ButtonStyle.danger),
}
EMOJI_ACTIONS = {emoji: action for action, (emoji, _, _) in ACTIONS.items()}


class JobActions(Protocol):
    """What runs 🔁 / 🎲 / ❌ pressed as a button."""

    async def on_button(
        self, interaction: discord.Interaction, action: str, job_id: str
    ) -> None: ...


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"flux:(?P<action>reroll|new|cancel):(?P<job>[0-9A-Za-z]{4,16})",
):
    """🔁 / 🎲 / ❌ for one job; discord.py rebuilds it from the custom id after a restart."""

    def __init__(self, action: str, job_id: str) -> None:
        emoji, label, style = ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                emoji=emoji, label=label, style=style, custom_id=f"flux:{action}:{job_id}"
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        client = cast(commands.Bot, interaction.client)
        cog = cast(JobActions | None, client.get_cog(JOB_ACTIONS_COG))
        if cog is not None:
            await cog.on_button(interaction, self.action, self.job_id)


# Discord's face of each image action (fluxbot.app.derived_jobs.IMAGE_ACTIONS): code ->
# (label, emoji, operation, derive options); the pans show only their arrow.
PAN_EMOJI = {"pl": "⬅️", "pr": "➡️", "pu": "⬆️", "pd": "⬇️"}
OPERATIONS: dict[str, tuple[str | None, str | None, Operation, dict[str, Any]]] = {
    code: (
        None if code in PAN_EMOJI else action.label,
        PAN_EMOJI.get(code, "🖌️" if code == "remix" else None),
        action.operation,
        dict(action.options),
    )
    for code, action in IMAGE_ACTIONS.items()
}
SINGLE_ROWS = (("vary1", "vary2", "remix", "up"), ("z15", "z2"), ("pl", "pr", "pu", "pd"))


class ImageActions(Protocol):
    """What runs an image operation pressed as a button."""

    async def on_button(
        self, interaction: discord.Interaction, op: str, job_id: str, index: int
    ) -> None: ...


class ImageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"flux:img:(?P<op>vary1|vary2|remix|up|z15|z2|pl|pr|pu|pd):"
    r"(?P<job>[0-9A-Za-z]{4,16}):(?P<index>[0-3])",
):
    """One image operation on image `index` of a job; U1/V1... when the job made several."""

    def __init__(self, op: str, job_id: str, index: int, *, several: bool = False) -> None:
        label, emoji, _operation, _options = OPERATIONS[op]
        if several:  # Midjourney's U1..U4 / V1..V4
            label, emoji = f"{'U' if op == 'up' else 'V'}{index + 1}", None
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"flux:img:{op}:{job_id}:{index}",
            )
        )
        self.op, self.job_id, self.index = op, job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ImageButton:
        return cls(match["op"], match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = cast(commands.Bot, interaction.client)
        cog = cast(ImageActions | None, client.get_cog(IMAGE_ACTIONS_COG))
        if cog is not None:
            await cog.on_button(interaction, self.op, self.job_id, self.index)


def image_rows(row: JobRow) -> list[list[ImageButton]]:
    """The operations under a finished still result: all of them for one image, U/V for
    several (each U or V picks an image; the new result then has every button)."""
    params = row.params or {}
    if params.get("animation") or not row.images:
        return []
    count = len(row.images)
    if count > 1:
        return [
            [ImageButton("up", row.public_id, i, several=True) for i in range(count)],
            [ImageButton("vary1", row.public_id, i, several=True) for i in range(count)],
        ]
    return [[ImageButton(op, row.public_id, 0) for op in ops] for ops in SINGLE_ROWS]


def result_view(row: JobRow) -> discord.ui.View:
    """🔁 🎲 ❌ on the first row, then the image operations."""
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        button = JobButton(action, row.public_id)
        button.item.row = 0
        view.add_item(button)
    for number, images in enumerate(image_rows(row), start=1):
        for image_button in images:
            image_button.item.row = number
            view.add_item(image_button)
    return view
