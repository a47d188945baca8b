"""A small real discord.py bot shaped like fluxbot's hot path, for end-to-end self-tests."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image


def png_bytes(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class AgainButton(discord.ui.View):
    """The button the self-test bot puts under its result; a click answers ephemerally."""

    def __init__(self, clicks: list[int]) -> None:
        super().__init__(timeout=60)
        self.clicks = clicks

    @discord.ui.button(label="Again", custom_id="selftest:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.clicks.append(interaction.user.id)
        await interaction.response.send_message("again, coming up", ephemeral=True)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="What did you think?", custom_id="feedback:text"
    )

    def __init__(self, received: list[str]) -> None:
        super().__init__(custom_id="feedback:modal")
        self.received = received

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.received.append(self.text.value)
        await interaction.response.send_message("thanks", ephemeral=True)


@dataclass
class SelfTestBot:
    """A minimal bot shaped like fluxbot's hot path, plus what it observed."""

    bot: commands.Bot
    reactions: list[discord.RawReactionActionEvent] = field(default_factory=list)
    clicks: list[int] = field(default_factory=list)
    shown: list[discord.abc.User] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    image: bytes = field(default_factory=png_bytes)


def build_bot() -> SelfTestBot:
    intents = discord.Intents.default()
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
    harness = SelfTestBot(bot=bot)

    @bot.tree.command(name="imagine", description="Make a picture")
    @app_commands.describe(prompt="What to draw", seed="Fixed seed")
    async def imagine(
        interaction: discord.Interaction, prompt: str, seed: int | None = None
    ) -> None:
        await interaction.response.defer(thinking=True)
        message = await interaction.followup.send(
            f"{prompt} (seed {seed})",
            file=discord.File(io.BytesIO(harness.image), filename="result.png"),
            view=AgainButton(harness.clicks),
            wait=True,
        )
        for emoji in ("🔁", "🎲", "❌"):
            await message.add_reaction(emoji)

    settings = app_commands.Group(name="settings", description="Per-user settings")

    @settings.command(name="show", description="Show someone's settings")
    async def show(interaction: discord.Interaction, user: discord.User) -> None:
        harness.shown.append(user)
        await interaction.response.send_message(f"settings of {user.mention}", ephemeral=True)

    bot.tree.add_command(settings)

    async def style_names(interaction: discord.Interaction, current: str) -> list:
        names = ["anime", "analog film", "watercolour"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @bot.tree.command(name="style", description="Pick a style")
    @app_commands.autocomplete(name=style_names)
    async def style(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @bot.tree.command(name="feedback", description="Tell us what you think")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal(harness.feedback))

    @bot.event
    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        if bot.user is not None and payload.user_id != bot.user.id:
            harness.reactions.append(payload)

    async def setup_hook() -> None:
        await bot.tree.sync()

    async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every non-initial IDENTIFY (Discord's identify rate
        # limit); the fake has no such limit, so re-identifying tests need not wait.
        return None

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    bot.before_identify_hook = before_identify_hook  # type: ignore[method-assign]
    return harness
