"""A user's own data: /history, /show, /seed, /settings and /forget-me."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.permissions import (
    PermissionDenied,
    Scope,
    can_show_job,
    history_scope,
    require,
)
from fluxbot.bot.actors import actor_of, is_age_restricted
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.controls import result_view
from fluxbot.bot.cogs.errors import send_error
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import ASPECT_PRESETS, SEED_MAX
from fluxbot.core.seeds import SeedProfile
from fluxbot.prompts.flags import parse_aspect
from fluxbot.store.jobs import JobPage
from fluxbot.store.removal import Removal

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

PER_PAGE = 8
PROFILE_CHOICES = [
    app_commands.Choice(name="random: a new seed each time", value="random"),
    app_commands.Choice(name="fixed: always the same seed (give a value)", value="fixed"),
    app_commands.Choice(
        name="increment: each job continues from your last seed", value="increment"
    ),
]
ASPECT_CHOICES = [app_commands.Choice(name=name, value=name) for name in ASPECT_PRESETS]


def history_embed(page: JobPage, user_id: int) -> discord.Embed:
    embed = discord.Embed(title="History", colour=presenters.EMBED_COLOUR)
    embed.description = f"<@{user_id}>'s jobs, newest first."
    if not page.jobs:
        embed.description += "\nNothing yet: try `/imagine`."
    for job in page.jobs:
        prompt = job.prompt if len(job.prompt) <= 80 else job.prompt[:79] + "…"
        when = int(job.created_at.timestamp())
        origin = presenters.lineage(job)
        origin_line = f"\n↳ {origin}" if origin else ""
        embed.add_field(
            name=f"`{job.public_id}` · {job.status} · seed {job.seed}",
            value=f"{prompt}{origin_line}\n<t:{when}:R>",
            inline=False,
        )
    embed.set_footer(text=f"Page {page.page + 1} of {page.pages} · {page.total} job(s)")
    return embed


class HistoryPageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"flux:history:(?P<user>\d+):(?P<page>\d+):(?P<dir>prev|next)",
):
    """Page buttons whose custom id carries whose history and which page: restart-proof."""

    def __init__(self, user_id: int, page: int, direction: str, *, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label="◀ Newer" if direction == "prev" else "Older ▶",
                style=discord.ButtonStyle.secondary,
                custom_id=f"flux:history:{user_id}:{page}:{direction}",
                disabled=disabled,
            )
        )
        self.user_id, self.page, self.direction = user_id, page, direction

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> HistoryPageButton:
        return cls(int(match["user"]), int(match["page"]), match["dir"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            # Checked again on every press: whoever presses gets their own scope.
            scope = _history_scope(interaction, self.user_id)
            # The ignore below: interaction.client is typed discord.Client; here it is the FluxBot.
            bot: FluxBot = interaction.client  # type: ignore[assignment]
            target = self.page + (1 if self.direction == "next" else -1)
            page = await bot.store.jobs.for_user(
                self.user_id, page=max(0, target), per_page=PER_PAGE, guild_id=scope.guild_id
            )
            await interaction.response.edit_message(
                embed=history_embed(page, self.user_id), view=history_view(page, self.user_id)
            )
        except Exception as exc:
            await send_error(interaction, exc)


def history_view(page: JobPage, user_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryPageButton(user_id, page.page, "prev", disabled=not page.has_previous))
    view.add_item(HistoryPageButton(user_id, page.page, "next", disabled=not page.has_next))
    return view


class ForgetMeButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"flux:forget:(?P<user>\d+)",
):
    """The confirmation of /forget-me; only the user it was shown to can press it."""

    def __init__(self, user_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Yes, delete all my data",
                style=discord.ButtonStyle.danger,
                custom_id=f"flux:forget:{user_id}",
            )
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ForgetMeButton:
        return cls(int(match["user"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.user_id:
                raise NotAllowed("Only the person who asked can confirm this.")
            # The ignore below: interaction.client is typed discord.Client; here it is the FluxBot.
            bot: FluxBot = interaction.client  # type: ignore[assignment]
            await interaction.response.defer()
            removal = await bot.service.forget_user(self.user_id)
            await interaction.edit_original_response(
                content=f"🗑️ Deleted your data: {_removal_summary(removal)}.", view=None
            )
        except Exception as exc:
            await send_error(interaction, exc)


def _history_scope(interaction: discord.Interaction, user_id: int) -> Scope:
    """Whose jobs the caller may list, and where (see fluxbot.app.permissions)."""
    scope = history_scope(actor_of(interaction), user_id)
    if not isinstance(scope, Scope):
        raise PermissionDenied(scope.reason)
    return scope


def _removal_summary(removal: Removal) -> str:
    return f"{removal.jobs} job(s) and {removal.images} image(s)"


class History(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your jobs, newest first")
    @app_commands.describe(user="A member's jobs made in this server (server managers)")
    async def history(
        self, interaction: discord.Interaction, user: discord.User | None = None
    ) -> None:
        target = user or interaction.user
        scope = _history_scope(interaction, target.id)
        page = await self.bot.store.jobs.for_user(
            target.id, page=0, per_page=PER_PAGE, guild_id=scope.guild_id
        )
        await interaction.response.send_message(
            embed=history_embed(page, target.id),
            view=history_view(page, target.id),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="Post a job's result again, with its controls")
    @app_commands.describe(job_id="The job id shown under a result or in /history")
    async def show(self, interaction: discord.Interaction, job_id: str) -> None:
        row = await self.bot.store.jobs.by_public_id(job_id.strip())
        if row is None:
            raise UserError(f"There is no job `{job_id.strip()[:16]}`.")
        nsfw = is_age_restricted(interaction.channel)
        require(can_show_job(actor_of(interaction), row, age_restricted_channel=nsfw))
        if not row.images:
            raise UserError(f"Job `{row.public_id}` has no images ({row.status}).")
        # A private job stays private: only the person allowed to see it sees it again.
        await interaction.response.defer(thinking=True, ephemeral=row.private)
        images = await self.bot.store.read_images(row)
        policy = await self.bot.store.guilds.get(row.guild_id)
        routes = presenters.routes_for(row, policy.safety_policy, age_restricted_channel=nsfw)
        uploads, notes = presenters.routed_uploads(row, images, interaction.filesize_limit, routes)
        device_s = sum(
            (row.timings or {}).get(k, 0.0) for k in ("text_encode", "denoise", "decode")
        )
        embed = presenters.result_embed(row, images, device_s, notes)
        message = await interaction.followup.send(
            embed=embed,
            files=presenters.files(uploads),
            view=result_view(row),
            wait=True,
            ephemeral=row.private,
        )
        await self.bot.store.jobs.set_messages(row.id, result_message_id=message.id)
        if row.user_id == interaction.user.id:
            await self.bot.store.jobs.mark_delivered(row.id)

    @app_commands.command(name="seed", description="Your recent seeds and your seed profile")
    @app_commands.describe(
        profile="How your next seeds are chosen", value=f"The seed for 'fixed', 0 to {SEED_MAX}"
    )
    @app_commands.choices(profile=PROFILE_CHOICES)
    async def seed(
        self,
        interaction: discord.Interaction,
        profile: app_commands.Choice[str] | None = None,
        value: app_commands.Range[int, 0, SEED_MAX] | None = None,
    ) -> None:
        users = self.bot.store.users
        if profile is not None:
            if profile.value == "fixed":
                if value is None:
                    raise UserError("The fixed profile needs a value: the seed to use.")
                chosen = SeedProfile.parse(f"fixed:{value}")
            else:
                chosen = SeedProfile.parse(profile.value)
            await users.update_settings(interaction.user.id, seed_profile=str(chosen))
        user = await users.get_or_create(interaction.user.id)
        recent = await users.recent_seeds(interaction.user.id, limit=10)
        lines = [f"Profile: **{user.seed_profile}** · last seed: {user.last_seed}"]
        for record in recent:
            lines.append(f"`{record.seed}` · <t:{int(record.used_at.timestamp())}:R>")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="settings", description="Your defaults for new images")
    @app_commands.describe(
        aspect="Default aspect ratio",
        steps="Default steps (1 to 8)",
        private="Results only you see",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES)
    async def settings(
        self,
        interaction: discord.Interaction,
        aspect: app_commands.Choice[str] | None = None,
        steps: app_commands.Range[int, 1, 8] | None = None,
        private: bool | None = None,
    ) -> None:
        if steps is not None and steps > self.bot.settings.max_steps:
            raise UserError(f"steps {steps} is not allowed: 1 to {self.bot.settings.max_steps}.")
        user = await self.bot.store.users.update_settings(
            interaction.user.id,
            default_aspect=parse_aspect(aspect.value) if aspect else None,
            default_steps=steps,
            private_results=private,
        )
        await interaction.response.send_message(
            f"Your defaults: aspect **{user.default_aspect}**, steps **{user.default_steps}**, "
            f"private results **{'on' if user.private_results else 'off'}**.",
            ephemeral=True,
        )

    @app_commands.command(name="forget-me", description="Delete all your data (asks first)")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(ForgetMeButton(interaction.user.id))
        await interaction.response.send_message(
            "This deletes all your jobs, images and seeds for good. Sure?",
            view=view,
            ephemeral=True,
        )


async def setup(bot: FluxBot) -> None:
    bot.add_dynamic_items(HistoryPageButton, ForgetMeButton)
    await bot.add_cog(History(bot))
