"""Buttons under a result that keep working after a restart: the custom id carries the job id.

A press is handed to whichever loaded cog is named `JOB_ACTIONS_COG` (the Imagine cog), through
the `JobActions` protocol, so this module depends on no cog.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import discord
from discord.ext import commands

from fluxbot.bot.cogs.presenters import CANCEL, NEW_SEED, REROLL
from fluxbot.store.models import JobRow

JOB_ACTIONS_COG = "Imagine"

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
    discord.ui.DynamicItem[discord.ui.Button],  # type: ignore[type-arg]
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


def result_view(row: JobRow) -> discord.ui.View:
    """🔁 🎲 ❌ on the first row, then the image operations (fluxbot.bot.cogs.edits)."""
    from fluxbot.bot.cogs.edits import image_rows

    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        button = JobButton(action, row.public_id)
        button.item.row = 0
        view.add_item(button)
    for number, buttons in enumerate(image_rows(row), start=1):
        for button in buttons:
            button.item.row = number
            view.add_item(button)
    return view
