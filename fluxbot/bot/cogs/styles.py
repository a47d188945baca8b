"""/styles: the owner's styles with their trigger words and a sample image; style autocomplete."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.style_samples import StyleSamples
from fluxbot.bot.cogs import presenters
from fluxbot.core.styles import Style

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

MAX_CHOICES = 25  # Discord's limit on autocomplete choices (the list itself may be longer)
CHOICE_TEXT = 100  # a choice's name and value are at most 100 characters
LIST_FIELDS = 25  # an embed holds at most 25 fields


async def style_choices(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Styles matching what the user typed: the first 25 matches of the whole list, so every
    style is reachable by typing part of its name, however many there are."""
    # The ignore below: interaction.client is typed discord.Client; here it is the FluxBot.
    bot: FluxBot = interaction.client  # type: ignore[assignment]
    choices = []
    for style in bot.engine.styles.search(current, limit=MAX_CHOICES):
        label = f"{style.name} - {style.description}" if style.description else style.name
        choices.append(app_commands.Choice(name=label[:CHOICE_TEXT], value=style.name))
    return choices


def _describe(style: Style) -> str:
    lines = []
    if style.description:
        lines.append(style.description)
    if style.trigger_words:
        lines.append("Trigger words: " + ", ".join(f"`{w}`" for w in style.trigger_words))
    lines.append("LoRA" if style.lora is not None else "Prompt preset")
    return "\n".join(lines)[:1024]


class Styles(commands.Cog):
    """Lists the styles `/imagine style:` offers."""

    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot
        self.samples = StyleSamples(bot.settings.data_dir)

    @app_commands.command(name="styles", description="The styles /imagine offers")
    @app_commands.describe(name="Show one style, with a sample image once one exists")
    @app_commands.autocomplete(name=style_choices)
    async def styles(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 100] | None = None
    ) -> None:
        catalog = self.bot.engine.styles
        if name:
            style = catalog.require(name)
            embed = discord.Embed(
                title=f"Style: {style.name}",
                description=_describe(style),
                colour=presenters.EMBED_COLOUR,
            )
            if style.template:
                embed.add_field(name="Template", value=style.template[:1024], inline=False)
            sample = self.samples.path(style.name)
            if sample is None:
                embed.set_footer(text="No sample yet: the first public image in it becomes one.")
                await interaction.response.send_message(embed=embed, ephemeral=True)
                return
            embed.set_image(url=f"attachment://{style.name}.png")
            file = discord.File(sample, filename=f"{style.name}.png")
            await interaction.response.send_message(embed=embed, file=file, ephemeral=True)
            return
        if not len(catalog):
            await interaction.response.send_message(
                "No styles are configured on this bot.", ephemeral=True
            )
            return
        embed = discord.Embed(
            title=f"Styles ({len(catalog)})",
            description="Use one with `/imagine style:`; `/styles name:` shows a sample.",
            colour=presenters.EMBED_COLOUR,
        )
        for style in list(catalog)[:LIST_FIELDS]:
            embed.add_field(name=style.name, value=_describe(style), inline=False)
        if len(catalog) > LIST_FIELDS:
            embed.set_footer(
                text=f"and {len(catalog) - LIST_FIELDS} more: type part of a name in "
                "/styles name: or /imagine style:"
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Styles(bot))
