"""Admin commands: /gpu, /queue and /admin pause|resume|cancel|ban|unban|purge|sync.

Discord hides them from non-admins (default permissions), and every call is checked again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.device_report import live_statuses
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.checks import admin_only
from fluxbot.bot.cogs.errors import UserError
from fluxbot.devices.status import GpuStatus

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot
    from fluxbot.serving.workers.base import WorkerStatus

GIB = 2**30
QUEUE_LINES = 25


def _fmt(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def gpu_embed(status: GpuStatus | None, worker: WorkerStatus) -> discord.Embed:
    name = status.name if status else worker.device
    embed = discord.Embed(title=f"{name} ({worker.device})", colour=presenters.EMBED_COLOUR)
    if status is not None:
        embed.add_field(name="Vendor", value=str(status.vendor))
        embed.add_field(name="Utilisation", value=_fmt(status.utilization, " %"))
        used, total = status.memory_used, status.memory_total
        memory = (
            "n/a" if used is None or total is None else f"{used / GIB:.1f} / {total / GIB:.1f} GiB"
        )
        embed.add_field(name="VRAM", value=memory)
        embed.add_field(name="Temperature", value=_fmt(status.temperature_c, " °C"))
        power = _fmt(status.power_w, " W")
        if status.power_limit_w is not None:
            power += f" / {status.power_limit_w:.0f} W"
        embed.add_field(name="Power", value=power)
    embed.add_field(name="Profile (memory/speed)", value=worker.profile or "loading")
    embed.add_field(name="State", value=str(worker.state))
    embed.add_field(
        name="Current job", value=f"`{worker.current_job_id}`" if worker.current_job_id else "none"
    )
    embed.add_field(name="Queue depth", value=str(worker.queue_depth))
    embed.add_field(name="Images done", value=str(worker.images_done))
    embed.add_field(name="Mean s/image", value=_fmt(worker.mean_s_per_image, " s", 2))
    return embed


class Admin(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    @app_commands.command(name="gpu", description="Admins: devices, memory, load and queue")
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def gpu(self, interaction: discord.Interaction) -> None:
        statuses = await asyncio.to_thread(live_statuses, self.bot.engine.devices, self.bot.nvml)
        workers = self.bot.engine.scheduler.status().workers
        embeds = [gpu_embed(statuses.get(w.device), w) for w in workers][:10]
        await interaction.response.send_message(embeds=embeds, ephemeral=True)

    @app_commands.command(name="queue", description="Admins: the queue with users and states")
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        status = self.bot.engine.scheduler.status()
        lines = [
            f"{'▶' if e.position == 0 else f'#{e.position}'} `{e.job_id}` <@{e.user_id}> "
            f"{e.state}{f' on {e.device}' if e.device else ''}"
            for e in status.queue[:QUEUE_LINES]
        ]
        header = f"{status.running} running, {status.queued} queued" + (
            " · **paused**" if status.paused else ""
        )
        await interaction.response.send_message(
            "\n".join([header, *lines]),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    admin = app_commands.Group(
        name="admin",
        description="Admins: control the bot",
        default_permissions=discord.Permissions(administrator=True),
    )

    @admin.command(name="pause", description="Stop starting new jobs (running ones finish)")
    @admin_only()
    async def pause(self, interaction: discord.Interaction) -> None:
        self.bot.engine.scheduler.pause()
        await interaction.response.send_message("⏸️ Paused: no new jobs start.", ephemeral=True)

    @admin.command(name="resume", description="Start jobs again")
    @admin_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        self.bot.engine.scheduler.resume()
        await interaction.response.send_message("▶️ Resumed.", ephemeral=True)

    @admin.command(name="cancel", description="Cancel any queued or running job")
    @app_commands.describe(job_id="The job id")
    @admin_only()
    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        row = await self.bot.store.jobs.by_public_id(job_id.strip())
        if row is None or not await self.bot.service.cancel(row.public_id):
            raise UserError(f"No queued or running job `{job_id.strip()[:16]}`.")
        await interaction.response.send_message(f"Cancelled `{row.public_id}`.", ephemeral=True)

    @admin.command(name="ban", description="Stop a user from making images")
    @admin_only()
    async def ban(self, interaction: discord.Interaction, user: discord.User) -> None:
        await self.bot.store.bans.ban(user.id, None, by=interaction.user.id)
        await interaction.response.send_message(f"Banned {user.mention}.", ephemeral=True)

    @admin.command(name="unban", description="Let a user make images again")
    @admin_only()
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        await self.bot.store.bans.unban(user.id, None)
        await interaction.response.send_message(f"Unbanned {user.mention}.", ephemeral=True)

    @admin.command(name="purge", description="Delete all of a user's jobs and images")
    @admin_only()
    async def purge(self, interaction: discord.Interaction, user: discord.User) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        for job in await self.bot.store.jobs.queue():
            if job.user_id == user.id:
                await self.bot.service.cancel(job.public_id)
        await self.bot.service.flush()
        removal = await self.bot.store.delete_user(user.id)
        await interaction.followup.send(
            f"Purged {user.mention}: {removal.jobs} job(s), {removal.images} image(s).",
            ephemeral=True,
        )

    @admin.command(name="sync", description="Sync the slash commands with Discord now")
    @admin_only()
    async def sync(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands(force=True)
        await interaction.followup.send(f"Synced {count} command(s).", ephemeral=True)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Admin(bot))
