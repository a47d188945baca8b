"""`fluxbot` as a user starts it, in a subprocess against the fake Discord: the settings a user
would set, and the start and stop that the tests and the bench (e2e, acks) share."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any


def bot_env(server: Any, data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment plus the fake's token and addresses, the tiny model on the
    CPU and a data dir; `settings` (FLUXBOT_... = value) add to or replace those."""
    env = dict(os.environ)
    env.update(
        DISCORD_TOKEN=server.token,
        FLUXBOT_MODEL="tiny-random",
        FLUXBOT_GPUS="cpu",
        FLUXBOT_DATA_DIR=str(data_dir),
        FLUXBOT_DISCORD_API_BASE=server.api_base,
        FLUXBOT_DISCORD_GATEWAY_URL=server.gateway_url,
        FLUXBOT_MIN_SIZE="64",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


async def start_fluxbot(
    env: dict[str, str],
    cwd: Path,
    *args: str,
    capture: bool = True,
    output: Path | None = None,
) -> asyncio.subprocess.Process:
    """`python -m fluxbot ARGS` (default `run`); its output piped (stderr into stdout) to read
    at the end, written to `output`, or dropped."""
    if output is not None:
        with output.open("ab") as sink:  # the child keeps its own copy of the descriptor
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluxbot", *(args or ("run",)), env=env, cwd=cwd,
                stdout=sink, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
    piped = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fluxbot", *(args or ("run",)), env=env, cwd=cwd,
        stdout=piped, stderr=asyncio.subprocess.STDOUT if capture else piped,
    )  # fmt: skip


async def stop_fluxbot(process: asyncio.subprocess.Process, within_s: float = 60) -> None:
    """SIGTERM (the bot drains and exits), then SIGKILL if it is still there after `within_s`."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), within_s)
    except TimeoutError:
        process.kill()
        await process.wait()
