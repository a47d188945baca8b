"""FluxBot: the discord.py client that owns fluxbot's services, and `run` to start it.

The bot is the one module under fluxbot/ that imports discord: it wires the Discord-free engine
(store, scheduler, workers) to the cogs in cogs/.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import discord
import yarl
from discord.ext import commands

from fluxbot.app.health import HEARTBEAT_INTERVAL_S, Heartbeat, write_heartbeat
from fluxbot.app.root import Engine, build_engine
from fluxbot.app.service import JobService
from fluxbot.app.style_samples import StyleSamples
from fluxbot.bot.cogs import presenters
from fluxbot.bot.cogs.results import ResultPoster
from fluxbot.bot.delivery import RetryPolicy
from fluxbot.bot.guard import guard_parsers
from fluxbot.bot.live import LiveJobs
from fluxbot.bot.permissions import invite_url
from fluxbot.bot.tree import FluxTree
from fluxbot.config import Settings
from fluxbot.devices.nvml import NvmlMonitor
from fluxbot.serving.workers.base import WorkerState
from fluxbot.store import Store
from fluxbot.store.models import JobRow
from fluxbot.store.retention import RetentionPolicy

log = logging.getLogger(__name__)

EXTENSIONS = (
    "fluxbot.bot.cogs.errors",
    "fluxbot.bot.cogs.imagine",
    "fluxbot.bot.cogs.styles",
    "fluxbot.bot.cogs.edits",
    "fluxbot.bot.cogs.history",
    "fluxbot.bot.cogs.admin",
    "fluxbot.bot.cogs.servers",
)
COMMANDS_HASH_FILE = "commands.sha256"
RETENTION_INTERVAL_S = 3600.0
STOP_TASKS_S = 10.0  # how long close() waits for its cancelled tasks to end


def point_discord_at(settings: Settings) -> None:
    """Send discord.py's REST calls and gateway connection where the settings say.

    discord.py keeps both as class attributes (there is no per-client option), so this is the
    one place they are set: a REST proxy such as nirn-proxy, or the local test stand-in.
    """
    discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def bot_intents() -> discord.Intents:
    """Guilds and reactions only: no privileged intent (message content is not needed)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    intents.dm_reactions = True
    return intents


def limit_steps_option(tree: discord.app_commands.CommandTree, max_steps: int) -> None:
    """Every slash command's `steps` option offers 1 to FLUXBOT_MAX_STEPS (the cogs declare a
    static range; this is the one place the operator's limit reaches Discord)."""
    for command in tree.walk_commands():
        params = getattr(command, "_params", None)
        if not params or "steps" not in params:
            continue
        param = params["steps"]
        description = re.sub(r"\b1 to \d+", f"1 to {max_steps}", str(param.description))
        params["steps"] = dataclasses.replace(param, max_value=max_steps, description=description)


class FluxBot(commands.Bot):
    """Holds the settings, store and engine; loads the cogs; follows and posts every job
    (also those recovered after a restart); drains the queue on close."""

    def __init__(self, settings: Settings, store: Store, engine: Engine) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            tree_cls=FluxTree,
        )
        guard_parsers(self._connection.parsers)
        self.settings = settings
        # Bot owners: FLUXBOT_ADMIN_IDS now, the application's owner or team once connected.
        self.owner_ids: frozenset[int] = frozenset(settings.admin_ids)
        self.store = store
        self.engine = engine
        self.live = LiveJobs()
        retry = RetryPolicy(
            attempts=settings.delivery_attempts,
            timeout_s=settings.delivery_timeout_s,
            first_delay_s=settings.delivery_backoff_s,
        )
        self.poster = ResultPoster(
            self, store, engine.service, self.live, StyleSamples(settings.data_dir), retry
        )
        engine.service.on_finished(self.poster.post)
        self.nvml = NvmlMonitor()
        self.recovered_failures: list[JobRow] = []
        self._background: list[asyncio.Task[Any]] = []
        self._closing_started = False

    @property
    def service(self) -> JobService:
        return self.engine.service

    async def load_owners(self) -> frozenset[int]:
        """The application's owner (or its team's members) plus FLUXBOT_ADMIN_IDS."""
        owners = set(self.settings.admin_ids)
        try:
            info = await self.application_info()
        except discord.HTTPException as exc:
            log.warning(
                "could not read the application's owners (%s); using FLUXBOT_ADMIN_IDS", exc
            )
        else:
            if info.team is not None:
                owners.update(member.id for member in info.team.members)
            else:
                owners.add(info.owner.id)
        self.owner_ids = frozenset(owners)
        log.info("bot owners: %d", len(self.owner_ids))
        return self.owner_ids

    async def setup_hook(self) -> None:
        await self.load_owners()
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except Exception:
                log.exception("could not load %s", extension)
        limit_steps_option(self.tree, self.settings.max_steps)
        recovery = await self.service.start(self.settings.recover_jobs)
        self.recovered_failures = recovery.failed
        # What every command reads before it is answered, cached up front.
        await self.store.guilds.load_all()
        await self.store.users.load_private_defaults()
        for row in recovery.queued:
            self.poster.follow_recovered(row)
        await self.sync_commands(force=False)
        retention = RetentionPolicy.from_settings(self.settings)
        if retention.enabled:
            self.spawn(self._prune_forever(retention), "retention")
        self.spawn(self._heartbeat_forever(), "heartbeat")

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `work` beside the bot; `close()` cancels it and waits for it to end before the
        store closes (a task cut off inside a database call must not outlive the connection)."""
        task = asyncio.create_task(work, name=name)
        self._background.append(task)
        return task

    def heartbeat(self) -> Heartbeat:
        """What `fluxbot health` reads: connection, servers, workers ready."""
        states = [w.status().state for w in self.engine.scheduler.workers]
        ready = sum(state in (WorkerState.IDLE, WorkerState.BUSY) for state in states)
        return Heartbeat(
            at=time.time(),
            pid=os.getpid(),
            connected=self.is_ready() and not self.is_closed(),
            guilds=len(self.guilds),
            workers=len(states),
            workers_ready=ready,
        )

    async def _heartbeat_forever(self) -> None:
        """Write the heartbeat file now and every HEARTBEAT_INTERVAL_S (for container checks)."""
        while True:
            try:
                write_heartbeat(self.settings.data_dir, self.heartbeat())
            except OSError as exc:
                log.warning("cannot write the heartbeat file: %s", exc)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _prune_forever(self, policy: RetentionPolicy) -> None:
        """Apply the retention setting at start, then every hour."""
        while True:
            try:
                removal = await self.store.prune(policy)
                if removal.jobs:
                    log.info(
                        "retention: removed %d job(s), %d image(s)", removal.jobs, removal.images
                    )
            except Exception:
                log.exception("retention pruning failed")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def _notify_recovery_failures(self) -> None:
        """Tell users whose jobs a crash interrupted and that could not be resumed."""
        failed, self.recovered_failures = self.recovered_failures, []
        for row in failed:
            if row.channel_id is None:
                continue
            channel = self.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
            if row.status_message_id is not None:
                status = channel.get_partial_message(row.status_message_id)
                with contextlib.suppress(discord.HTTPException):
                    await status.edit(content=presenters.failure_text(row.public_id, row.error))
            try:
                await channel.send(
                    f"<@{row.user_id}> ⚠️ job `{row.public_id}` was interrupted by a restart "
                    f"and could not be resumed: {row.error or 'unknown error'}. Try /imagine again."
                )
            except discord.HTTPException:
                log.warning("could not tell user %s about job %s", row.user_id, row.public_id)

    def _commands_hash(self) -> str:
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        blob = json.dumps(
            {"guild": self.settings.dev_guild, "commands": payload}, sort_keys=True, default=str
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    async def sync_commands(self, *, force: bool) -> int:
        """Sync the slash commands when they changed since the last sync (or when forced)."""
        marker = self.settings.data_dir / COMMANDS_HASH_FILE
        digest = self._commands_hash()
        if not force and marker.exists() and marker.read_text().strip() == digest:
            log.info("slash commands unchanged; not syncing")
            return 0
        guild = discord.Object(self.settings.dev_guild) if self.settings.dev_guild else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest)
        log.info("synced %d slash command(s) %s", len(synced), "to the dev guild" if guild else "")
        return len(synced)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("connected as %s (%s) to %d guild(s)", self.user, self.user.id, len(self.guilds))
        with contextlib.suppress(OSError):
            write_heartbeat(self.settings.data_dir, self.heartbeat())
        if not self.guilds:
            log.warning(
                "the bot is in no server yet; add it to one with %s",
                invite_url(self.application_id or self.user.id),
            )
        if self.recovered_failures:
            await self._notify_recovery_failures()

    async def close(self) -> None:
        """Stop taking jobs, let running ones finish or hand them back, then disconnect."""
        if self._closing_started:
            return
        self._closing_started = True
        log.info("shutting down: draining the queue")
        try:
            handed_back = await self.service.shutdown(grace_s=30.0)
            if handed_back:
                log.info("%d job(s) stay queued for the next start", handed_back)
        except Exception:
            log.exception("error while draining the queue")
        stopping = [*self.live.trackers(), *self._background]
        for task in stopping:
            task.cancel()
        if stopping:
            # Ended before the store closes: a task cancelled inside a database call must not
            # be left waiting on a connection the store has already disposed of.
            await asyncio.wait(stopping, timeout=STOP_TASKS_S)
        await super().close()
        with contextlib.suppress(OSError):  # `fluxbot health` now says "not connected"
            write_heartbeat(self.settings.data_dir, self.heartbeat())
        self.nvml.close()
        await self.store.close()


async def create_bot(settings: Settings) -> FluxBot:
    """Open the store (applying migrations), build the engine, point discord.py, make the bot."""
    store = await Store.open(settings)
    engine = build_engine(settings, store)
    point_discord_at(settings)
    return FluxBot(settings, store, engine)


class Companion(Protocol):
    """Another front end served from this process (the web studio): started after the bot is
    made, stopped before it drains."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


CompanionFactory = Callable[[Store, Engine], Companion]


async def _main(settings: Settings, token: str, companion: CompanionFactory | None = None) -> int:
    bot = await create_bot(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # Another front end on the same store and engine (the web studio), started by the launcher.
    web = companion(bot.store, bot.engine) if companion is not None else None
    runner = asyncio.create_task(bot.start(token))
    stopper = asyncio.create_task(stop.wait())
    try:
        if web is not None:
            await web.start()
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN")
        return 1
    except (discord.GatewayNotFound, discord.ConnectionClosed, OSError) as exc:
        log.error("lost the connection to Discord: %s", exc)
        return 1
    finally:
        stopper.cancel()
        if web is not None:
            await web.stop()
        await bot.close()
        if not runner.done():
            await asyncio.gather(runner, return_exceptions=True)
    return 0


def run(settings: Settings, companion: CompanionFactory | None = None) -> int:
    """`fluxbot run`: migrations, engine, Discord (and `companion`, given the same store and
    engine); SIGINT/SIGTERM drain and exit cleanly."""
    assert settings.discord_token is not None
    token = settings.discord_token.get_secret_value()
    return asyncio.run(_main(settings, token, companion))
