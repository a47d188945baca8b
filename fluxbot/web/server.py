"""Serving the studio with uvicorn inside fluxbot's own event loop (alone, or beside the bot).

The server shares the loop with the scheduler, so studio handlers call the engine directly;
signals stay with fluxbot, which drains the queue before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from fluxbot.app.root import Engine, build_engine
from fluxbot.config import Settings
from fluxbot.store import Store
from fluxbot.web.access import Access, check_web_settings, is_local_mode
from fluxbot.web.actions import Studio
from fluxbot.web.app import StudioApp, create_app
from fluxbot.web.oauth import application_owner_ids
from fluxbot.web.sessions import SessionCodec, load_or_create_key
from fluxbot.web.urls import DEFAULT_PORT, PublicUrl, public_url

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: fluxbot decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: an ephemeral one, as tests use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The studio app on one socket; `start` returns once it accepts connections."""

    def __init__(self, settings: Settings, store: Store, engine: Engine) -> None:
        check_web_settings(settings)
        self.settings = settings
        self.store = store
        self.engine = engine
        self.sock: socket.socket | None = None
        self.url: PublicUrl | None = None
        self.studio: Studio | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.app: StudioApp | None = None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    async def start(self, *, port: int | None = None) -> None:
        settings = self.settings
        owners = await application_owner_ids(settings) if not is_local_mode(settings) else ()
        access = Access(settings, owners)
        self.studio = Studio(settings, self.store, self.engine, access)
        chosen = port if port is not None else settings.web_port or DEFAULT_PORT
        self.sock = bind(settings.web_host, chosen)
        self.url = public_url(settings.web_host, self.port, settings.web_base_url)
        codec = SessionCodec(
            load_or_create_key(settings.data_dir), settings.web_session_hours * 3600.0
        )
        self.app = create_app(self.studio, codec, self.url)
        config = uvicorn.Config(
            self.app.asgi,
            log_level="warning",
            access_log=False,
            lifespan="on",
            proxy_headers=settings.web_base_url is not None,
            timeout_graceful_shutdown=5,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the web server stopped while starting")
            await asyncio.sleep(0.05)
        mode = "local mode, no login" if is_local_mode(settings) else "Log in with Discord"
        log.info("web studio at %s/ (%s)", self.url.base, mode)

    async def stop(self) -> None:
        if self.app is not None:
            self.app.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)
        if self.sock is not None:
            self.sock.close()
        self._server, self._task = None, None


async def serve_studio(settings: Settings) -> int:
    """`fluxbot web`: the store, the engine and the studio, until SIGINT/SIGTERM; then drain."""
    if settings.web_port is None:
        settings = settings.model_copy(update={"web_port": DEFAULT_PORT})
    store = await Store.open(settings)
    engine = build_engine(settings, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    web = WebServer(settings, store, engine)
    try:
        await engine.service.start(settings.recover_jobs)
        await web.start()
        await stop.wait()
        log.info("shutting down: draining the queue")
    finally:
        await web.stop()
        handed_back = await engine.service.shutdown(grace_s=30.0)
        if handed_back:
            log.info("%d job(s) stay queued for the next start", handed_back)
        await store.close()
    return 0


def run(settings: Settings) -> int:
    return asyncio.run(serve_studio(settings))
