"""`fluxbot run` as a user starts it: a subprocess against the fake Discord, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from fluxbot.app.health import read_heartbeat
from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import wait_for
from tests.bot_process import bot_env, start_fluxbot
from tests.fake_discord.server import FakeDiscord


async def test_fluxbot_run_serves_and_stops_cleanly_on_sigterm(
    discord_server: FakeDiscord, tmp_path: Path
) -> None:
    server = discord_server
    data_dir = tmp_path / "data"
    env = bot_env(server, data_dir)
    process = await start_fluxbot(env, tmp_path)
    try:
        await server.wait_ready(within_s=90)
        await server.wait_for_commands("imagine", "gpu", "history", within_s=30)
        await server.slash(
            server.alice, "imagine", {"prompt": "a subprocess fox", "seed": 11, "steps": 1}
        )
        result = await server.wait_for_message(
            lambda m: bool(m.attachments and m.embeds), within_s=90
        )
        assert read_parameters(result.attachments[0].data)["seed"] == 11
        await wait_for(lambda: read_heartbeat(data_dir, 60.0).healthy, what="a healthy heartbeat")
        code, line = await fluxbot_health(env, tmp_path)
        assert code == 0 and line.startswith("healthy: connected"), line
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = output.decode()
    assert process.returncode == 0, log[-3000:]
    assert "draining the queue" in log and "Traceback" not in log
    assert (tmp_path / "data" / "fluxbot.db").exists()
    assert (tmp_path / "data" / "logs" / "fluxbot.log").read_text().count("done on cpu") == 1
    assert server.token not in (tmp_path / "data" / "logs" / "fluxbot.log").read_text()
    code, line = await fluxbot_health(env, tmp_path)
    assert code == 1 and "not connected" in line, line


async def fluxbot_health(env: dict[str, str], cwd: Path) -> tuple[int | None, str]:
    """`fluxbot health` as a container's healthcheck runs it: exit code and its line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fluxbot", "health", env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode().strip()


async def test_a_token_discord_refuses_is_one_line_and_exit_1(
    discord_server: FakeDiscord, tmp_path: Path
) -> None:
    env = bot_env(discord_server, tmp_path / "data", DISCORD_TOKEN="MTIz.not-the.token")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fluxbot", "run", env=env, cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1
    assert err.decode().strip().splitlines()[-1] == (
        "fluxbot: error: Discord refused the token: check DISCORD_TOKEN"
    )
    assert "Traceback" not in err.decode()
