"""`fluxbot run` with FLUXBOT_WEB_PORT: Discord and the studio from one process and one engine."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import httpx
from gradio_client import Client

from tests.bot_process import bot_env, start_fluxbot
from tests.fake_discord.server import FakeDiscord


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fluxbot_run_serves_the_studio_too(tmp_path: Path) -> None:
    port = _free_port()
    async with FakeDiscord() as server:
        env = bot_env(server, tmp_path / "data", FLUXBOT_WEB_PORT=str(port))
        process = await start_fluxbot(env, tmp_path)
        try:
            await server.wait_ready(within_s=120)
            url = f"http://127.0.0.1:{port}/"
            async with httpx.AsyncClient() as http:
                assert (await http.get(url)).status_code == 200

            def create() -> tuple[str, ...]:
                client = Client(url, verbose=False)
                try:
                    return client.predict(
                        "a web fox --steps 1",
                        "",
                        "your default",
                        5,
                        None,
                        1,
                        False,
                        api_name="/create",
                    )
                finally:
                    client.close()

            status, _, gallery, _, job_id = await asyncio.to_thread(create)
            assert status == f"Done: `{job_id}`" and len(gallery) == 1
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            # A studio job is shown in the studio; the bot, whose shutdown waits for every
            # finished job's handlers, posted nothing for it.
            assert not [m for m in server.messages() if m.attachments]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = output.decode()
    assert process.returncode == 0, log[-3000:]
    assert (
        "web studio at http://127.0.0.1:"
        in (tmp_path / "data" / "logs" / "fluxbot.log").read_text()
    )
    assert "Traceback" not in log, log[-6000:]
