"""/server settings | stats | flagged: a server's own policy and numbers, for its managers.

Discord shows the group to members with Manage Server; every call is checked again on the
server side (fluxbot.app.permissions), scoped to the server it is used in. Bot owners may look
at every server's numbers with `all_servers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from fluxbot.app.permissions import (
    EVERYWHERE,
    Scope,
    can_control_bot,
    can_manage_guild,
    require,
)
from fluxbot.bot.actors import actor_of
from fluxbot.core.requests import MAX_COUNT
from fluxbot.store.guilds import MAX_COOLDOWN_S, MAX_DAILY_QUOTA, GuildPolicy, SafetyPolicy
from fluxbot.store.usage import UsageReport

if TYPE_CHECKING:
    from fluxbot.bot.client import FluxBot

SAFETY_CHOICES = [
    app_commands.Choice(name="spoiler: flagged images are blurred until clicked", value="spoiler"),
    app_commands.Choice(name="withhold: flagged images are not posted", value="withhold"),
    app_commands.Choice(name="off: post flagged images as they are", value="off"),
]
STATS_LINES = 15


def describe_policy(policy: GuildPolicy) -> str:
    channels = (
        ", ".join(f"<#{c}>" for c in policy.allowed_channel_ids)
        if policy.allowed_channel_ids
        else "all"
    )
    role = f"<@&{policy.required_role_id}>" if policy.required_role_id else "none"
    quota = str(policy.daily_quota) if policy.daily_quota else "none"
    return "\n".join(
        [
            f"Channels: {channels}",
            f"Required role: {role}",
            f"Cooldown: {policy.cooldown_s} s · daily quota per member: {quota}",
            f"Max count: {policy.max_count or 'no limit'} · max steps: "
            f"{policy.max_steps or 'no limit'}",
            f"Private results by default: {'on' if policy.private_default else 'off'}",
            f"Image safety: {policy.safety_policy.value}",
        ]
    )


def describe_usage(report: UsageReport, *, all_servers: bool) -> str:
    where = (lambda line: f" in `{line.guild_id}`") if all_servers else (lambda line: "")
    lines = [f"**Since {report.since}** (UTC days)", "Per member:"]
    for line in report.per_user[:STATS_LINES]:
        lines.append(
            f"<@{line.user_id}>{where(line)}: {line.jobs} job(s), {line.images} image(s), "
            f"{line.gpu_seconds:.1f} GPU s"
        )
    if not report.per_user:
        lines.append("nothing yet")
    lines.append("Per day:")
    for line in report.per_day[:STATS_LINES]:
        lines.append(
            f"{line.day}{where(line)}: {line.jobs} job(s), {line.images} image(s), "
            f"{line.gpu_seconds:.1f} GPU s"
        )
    return "\n".join(lines)


class Servers(commands.Cog):
    def __init__(self, bot: FluxBot) -> None:
        self.bot = bot

    server = app_commands.Group(
        name="server",
        description="This server's settings and usage (server managers)",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @server.command(name="settings", description="Show or change this server's image policy")
    @app_commands.describe(
        allow_channel="Allow images in this channel (once any is set, only those)",
        disallow_channel="Stop allowing this channel",
        all_channels="True: images in every channel again",
        role="Members need this role to make images",
        no_role="True: no role needed",
        cooldown=f"Seconds between a member's jobs, 0 to {MAX_COOLDOWN_S}",
        daily_quota=f"Jobs per member per UTC day, 0 (no quota) to {MAX_DAILY_QUOTA}",
        max_count=f"Most images per job, 1 to {MAX_COUNT}; 0: no limit",
        max_steps="Most steps per job, 1 to 50; 0: no limit",
        private_default="Results are private unless the member asks otherwise",
        image_safety="What happens to images the safety check flags (outside NSFW channels)",
        reset="True: back to the defaults",
    )
    @app_commands.choices(image_safety=SAFETY_CHOICES)
    async def settings(
        self,
        interaction: discord.Interaction,
        allow_channel: discord.TextChannel | None = None,
        disallow_channel: discord.TextChannel | None = None,
        all_channels: bool | None = None,
        role: discord.Role | None = None,
        no_role: bool | None = None,
        cooldown: app_commands.Range[int, 0, MAX_COOLDOWN_S] | None = None,
        daily_quota: app_commands.Range[int, 0, MAX_DAILY_QUOTA] | None = None,
        max_count: app_commands.Range[int, 0, MAX_COUNT] | None = None,
        max_steps: app_commands.Range[int, 0, 50] | None = None,
        private_default: bool | None = None,
        image_safety: app_commands.Choice[str] | None = None,
        reset: bool | None = None,
    ) -> None:
        guild_id = interaction.guild_id
        require(can_manage_guild(actor_of(interaction), guild_id))
        assert guild_id is not None
        guilds = self.bot.store.guilds
        if reset:
            policy = await guilds.reset(guild_id)
        else:
            current = await guilds.get(guild_id)
            changes: dict[str, Any] = {}
            channels = list(current.allowed_channel_ids)
            if all_channels:
                channels = []
            if allow_channel is not None and allow_channel.id not in channels:
                channels.append(allow_channel.id)
            if disallow_channel is not None and disallow_channel.id in channels:
                channels.remove(disallow_channel.id)
            if tuple(channels) != current.allowed_channel_ids:
                changes["allowed_channel_ids"] = channels
            if role is not None:
                changes["required_role_id"] = role.id
            if no_role:
                changes["required_role_id"] = None
            if cooldown is not None:
                changes["cooldown_s"] = cooldown
            if daily_quota is not None:
                changes["daily_quota"] = daily_quota
            if max_count is not None:
                changes["max_count"] = max_count or None
            if max_steps is not None:
                changes["max_steps"] = max_steps or None
            if private_default is not None:
                changes["private_default"] = private_default
            if image_safety is not None:
                changes["safety_policy"] = SafetyPolicy(image_safety.value)
            policy = (
                await guilds.update(guild_id, changes, by=interaction.user.id)
                if changes
                else current
            )
        await interaction.response.send_message(
            f"**This server's settings**\n{describe_policy(policy)}",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @staticmethod
    def _scope(interaction: discord.Interaction, all_servers: bool | None) -> Scope:
        """This server for its managers; every server for owners who ask for it."""
        actor = actor_of(interaction)
        if all_servers:
            require(can_control_bot(actor))
            return EVERYWHERE
        require(can_manage_guild(actor, interaction.guild_id))
        return Scope(interaction.guild_id)

    @server.command(name="stats", description="Images and GPU seconds per member and per day")
    @app_commands.describe(days="How many days back, 1 to 90", all_servers="Owners: every server")
    async def stats(
        self,
        interaction: discord.Interaction,
        days: app_commands.Range[int, 1, 90] = 7,
        all_servers: bool | None = None,
    ) -> None:
        scope = self._scope(interaction, all_servers)
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.store.usage.report(scope.guild_id, days=days)
        await interaction.followup.send(
            describe_usage(report, all_servers=scope.everywhere)[:1900],
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @server.command(name="flagged", description="Jobs whose images the safety check flagged")
    @app_commands.describe(all_servers="Owners: every server")
    async def flagged(
        self, interaction: discord.Interaction, all_servers: bool | None = None
    ) -> None:
        scope = self._scope(interaction, all_servers)
        await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = await self.bot.store.jobs.flagged(guild_id=scope.guild_id)
        lines = []
        for job in jobs:
            flagged = [image for image in job.images if image.flagged]
            worst = max(
                (max((image.safety_scores or {}).values(), default=0.0) for image in flagged),
                default=0.0,
            )
            prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:59] + "…"
            lines.append(
                f"`{job.public_id}` <@{job.user_id}> · {len(flagged)} image(s), score "
                f"{worst:.2f} · <t:{int(job.created_at.timestamp())}:R> · {prompt}"
            )
        text = "\n".join(lines) if lines else "No flagged images."
        await interaction.followup.send(
            text[:1900], ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: FluxBot) -> None:
    await bot.add_cog(Servers(bot))
