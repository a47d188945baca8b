"""/gpu, /queue and /admin pause|resume|cancel|ban|unban|purge|sync.

Discord shows them to members with Manage Server (default permissions); every call is checked
again on the server side by fluxbot.app.permissions: pausing, resuming, syncing, purging and
bans everywhere are for the bot's owners; a server's managers cancel its jobs, ban and unban in
it, and see only its jobs in /queue and /gpu.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.device_report import live_statuses
from fluxbot.app.permissions import (
    PermissionDenied,
    Scope,
    can_ban,
    can_cancel_job,
    can_control_bot,
    queue_scope,
    require,
)
from fluxbot.bot.actors import actor_of
from fluxbot.bot.cogs import presenters
from fluxbot.core.errors import UserError
from fluxbot.devices.status import GpuStatus

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot
    from fluxbot.serving.workers.base import WorkerStatus

GIB = 2**30
QUEUE_LINES = 25


def _fmt(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def gpu_embed(
    status: GpuStatus | None, worker: WorkerStatus, *, show_job: bool = True
) -> discord.Embed:
    """One device's card; `show_job` False hides a job the viewer may not see."""
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
    embed.add_field(name="LoRAs", value=worker.loras or "none")
    embed.add_field(name="State", value=str(worker.state))
    current = "none"
    if worker.current_job_id:
        current = f"`{worker.current_job_id}`" if show_job else "another server's job"
    embed.add_field(name="Current job", value=current)
    embed.add_field(name="Queue depth", value=str(worker.queue_depth))
    embed.add_field(name="Images done", value=str(worker.images_done))
    embed.add_field(name="Mean s/image", value=_fmt(worker.mean_s_per_image, " s", 2))
    return embed


class Admin(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    async def _visible_jobs(self, interaction: discord.Interaction) -> set[str] | None:
        """Job ids the caller may see in /queue and /gpu (None: all of them)."""
        scope = queue_scope(actor_of(interaction))
        if not isinstance(scope, Scope):
            raise PermissionDenied(scope.reason)
        if scope.everywhere:
            return None
        return {job.public_id for job in await self.bot.store.jobs.queue(guild_id=scope.guild_id)}

    @app_commands.command(name="gpu", description="Managers: devices, memory, load and queue")
    @app_commands.default_permissions(manage_guild=True)
    async def gpu(self, interaction: discord.Interaction) -> None:
        visible = await self._visible_jobs(interaction)
        statuses = await asyncio.to_thread(live_statuses, self.bot.engine.devices, self.bot.nvml)
        workers = self.bot.engine.scheduler.status().workers
        embeds = [
            gpu_embed(
                statuses.get(w.device),
                w,
                show_job=visible is None or w.current_job_id in visible,
            )
            for w in workers
        ][:10]
        await interaction.response.send_message(embeds=embeds, ephemeral=True)

    @app_commands.command(name="queue", description="Managers: this server's jobs in the queue")
    @app_commands.default_permissions(manage_guild=True)
    async def queue(self, interaction: discord.Interaction) -> None:
        visible = await self._visible_jobs(interaction)
        status = self.bot.engine.scheduler.status()
        entries = [e for e in status.queue if visible is None or e.job_id in visible]
        lines = [
            f"{'▶' if e.position == 0 else f'#{e.position}'} `{e.job_id}` <@{e.user_id}> "
            f"{e.state}{f' on {e.device}' if e.device else ''}"
            for e in entries[:QUEUE_LINES]
        ]
        header = f"{status.running} running, {status.queued} queued" + (
            " · **paused**" if status.paused else ""
        )
        if visible is not None:
            header += f" in all; {len(entries)} from this server"
        await interaction.response.send_message(
            "\n".join([header, *lines]),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    admin = app_commands.Group(
        name="admin",
        description="Control the bot (owners) and this server's jobs and bans (managers)",
        default_permissions=discord.Permissions(manage_guild=True),
    )

    @admin.command(name="pause", description="Owners: stop starting new jobs")
    async def pause(self, interaction: discord.Interaction) -> None:
        require(can_control_bot(actor_of(interaction)))
        self.bot.engine.scheduler.pause()
        await interaction.response.send_message("⏸️ Paused: no new jobs start.", ephemeral=True)

    @admin.command(name="resume", description="Owners: start jobs again")
    async def resume(self, interaction: discord.Interaction) -> None:
        require(can_control_bot(actor_of(interaction)))
        self.bot.engine.scheduler.resume()
        await interaction.response.send_message("▶️ Resumed.", ephemeral=True)

    @admin.command(name="cancel", description="Cancel a queued or running job of this server")
    @app_commands.describe(job_id="The job id")
    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        row = await self.bot.store.jobs.by_public_id(job_id.strip())
        if row is None:
            raise UserError(f"No queued or running job `{job_id.strip()[:16]}`.")
        require(can_cancel_job(actor_of(interaction), row))
        if not await self.bot.service.cancel(row.public_id):
            raise UserError(f"No queued or running job `{row.public_id}`.")
        await interaction.response.send_message(f"Cancelled `{row.public_id}`.", ephemeral=True)

    @admin.command(name="ban", description="Stop a user from making images in this server")
    @app_commands.describe(everywhere="Owners: ban in every server")
    async def ban(
        self, interaction: discord.Interaction, user: discord.User, everywhere: bool = False
    ) -> None:
        scope = None if everywhere else interaction.guild_id
        require(can_ban(actor_of(interaction), scope))
        await self.bot.store.bans.ban(user.id, scope, by=interaction.user.id)
        where = "everywhere" if scope is None else "in this server"
        await interaction.response.send_message(
            f"Banned {user.mention} {where}.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @admin.command(name="unban", description="Let a user make images in this server again")
    @app_commands.describe(everywhere="Owners: lift the ban that holds in every server")
    async def unban(
        self, interaction: discord.Interaction, user: discord.User, everywhere: bool = False
    ) -> None:
        scope = None if everywhere else interaction.guild_id
        require(can_ban(actor_of(interaction), scope))
        lifted = await self.bot.store.bans.unban(user.id, scope)
        where = "everywhere" if scope is None else "in this server"
        text = (
            f"Unbanned {user.mention} {where}."
            if lifted
            else f"{user.mention} was not banned {where}."
        )
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @admin.command(name="purge", description="Owners: delete all of a user's jobs and images")
    async def purge(self, interaction: discord.Interaction, user: discord.User) -> None:
        require(can_control_bot(actor_of(interaction)))
        await interaction.response.defer(ephemeral=True, thinking=True)
        removal = await self.bot.service.forget_user(user.id)
        await interaction.followup.send(
            f"Purged {user.mention}: {removal.jobs} job(s), {removal.images} image(s).",
            ephemeral=True,
        )

    @admin.command(name="sync", description="Owners: sync the slash commands with Discord now")
    async def sync(self, interaction: discord.Interaction) -> None:
        require(can_control_bot(actor_of(interaction)))
        await interaction.response.defer(ephemeral=True, thinking=True)
        count = await self.bot.sync_commands(force=True)
        await interaction.followup.send(f"Synced {count} command(s).", ephemeral=True)


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Admin(bot))
