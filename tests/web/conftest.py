"""One real studio for all web tests: the tiny model on the CPU, a SQLite file, two servers.

A thread runs one event loop holding the store, the engine, the fake Discord and two studios on
ephemeral 127.0.0.1 ports sharing that engine: `local` (no login, the owner) and `oauth` (Log in
with Discord against the fake). Tests talk to them over HTTP like a browser or gradio_client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("gradio", reason="the web studio needs the fluxbot[web] extra")

from fluxbot.app.root import Engine, build_engine
from fluxbot.config import Settings, load_settings
from fluxbot.store import Store
from fluxbot.web.server import WebServer
from tests.fake_discord.oauth import CLIENT_SECRET
from tests.fake_discord.server import FakeDiscord

T = TypeVar("T")
START_S = 120.0


@dataclass
class Studios:
    """The running studios and what tests need to reach them."""

    loop: asyncio.AbstractEventLoop
    discord: FakeDiscord
    store: Store
    engine: Engine
    local: WebServer
    oauth: WebServer
    data_dir: Path

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the studios' loop (where the store and engine live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.local.port}"

    @property
    def oauth_url(self) -> str:
        return f"http://127.0.0.1:{self.oauth.port}"


def web_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model": "tiny-random",
        "data_dir": data_dir,
        "gpus": "cpu",
        "min_size": 64,
        "web_host": "127.0.0.1",
        "user_queue_cap": 5,
    }
    values.update(overrides)
    return load_settings(**values)


async def _start(data_dir: Path) -> Studios:
    discord = FakeDiscord()
    await discord.start()
    local_settings = web_settings(data_dir)
    oauth_settings = web_settings(
        data_dir,
        discord_token=discord.token,
        discord_api_base=discord.api_base,
        discord_client_id=discord.oauth.client_id,
        discord_client_secret=CLIENT_SECRET,
        admin_ids=str(discord.admin.id),
    )
    store = await Store.open(local_settings)
    engine = build_engine(local_settings, store)
    await engine.service.start(local_settings.recover_jobs)
    ready = await asyncio.wait_for(
        asyncio.gather(*(w.wait_ready() for w in engine.scheduler.workers)), START_S
    )
    assert all(ready), "the tiny model did not load"
    local = WebServer(local_settings, store, engine)
    await local.start(port=0)
    oauth = WebServer(oauth_settings, store, engine)
    await oauth.start(port=0)
    return Studios(asyncio.get_running_loop(), discord, store, engine, local, oauth, data_dir)


async def _stop(studios: Studios) -> None:
    await studios.local.stop()
    await studios.oauth.stop()
    await studios.engine.service.shutdown(grace_s=10.0)
    await studios.store.close()
    await studios.discord.stop()


async def _end_tasks() -> None:
    """Cancel what is left on the studio's loop and let it end before the loop closes (a task
    destroyed pending is logged at exit, after pytest has closed the log's stream)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=20)


@pytest.fixture(scope="session")
def studios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studios]:
    data_dir = tmp_path_factory.mktemp("web") / "data"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="studio-loop", daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(_start(data_dir), loop).result(START_S)
    try:
        yield started
    finally:
        asyncio.run_coroutine_threadsafe(_stop(started), loop).result(60)
        asyncio.run_coroutine_threadsafe(_end_tasks(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def client(studios: Studios) -> Iterator[Any]:
    """A gradio_client on the local (owner) studio, one per test module."""
    from gradio_client import Client

    client = Client(studios.local_url + "/", verbose=False)
    yield client
    client.close()
