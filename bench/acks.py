"""Acks under load (issue 12): how long Discord waits for the bot's answer during a burst.

`python -m bench acks` starts `fluxbot run` (a subprocess, as an operator starts it) against
tests/fake_discord, warms it with one job, then sends `--commands` /imagine from `--users` users
spread over `--spread-s` seconds and reports, from the fake's clock, the time from each
interaction's dispatch to the bot's callback (the ack Discord wants within 3 s; the target is
p99 under 500 ms) and to the "queued" message. The bot runs in its own process so the fake's
work does not sit on the bot's event loop; on a shared machine the figures include whatever
else the cores are doing. Defaults: the tiny-random model on the CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench.e2e import JOB_ID, Log, _bot_env, _wait_log, percentile

QUANTILES = (50, 95, 99, 100)


def spread(values: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max (seconds), nearest rank."""
    return {("max" if q == 100 else f"p{q}"): percentile(values, q) for q in QUANTILES}


def _queued_at(server: Any, record: Any) -> float | None:
    """When the bot first told the user the job's id (its queued or starting line)."""
    token = record.token
    for request in server.requests:
        if token not in request.path or request.done_at is None or request.method != "PATCH":
            continue
        if JOB_ID.search(str((request.payload or {}).get("content", ""))):
            return float(request.done_at - record.dispatched_at)
    return None


async def run_burst(
    *,
    model: str,
    gpus: str,
    work_dir: Path,
    log: Log,
    commands: int,
    users: int,
    spread_s: float,
    ready_within_s: float = 600.0,
) -> dict[str, Any]:
    from tests.bot_process import start_fluxbot, stop_fluxbot
    from tests.fake_discord.server import FakeDiscord

    data_dir = work_dir / "acks"
    # A fresh bot: an earlier run's jobs and command sync belong to another fake Discord.
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    log_path = data_dir / "logs" / "fluxbot.log"
    server = FakeDiscord()
    await server.start()
    people = [server.add_user(f"burst{i}") for i in range(users)]
    env = _bot_env(server, model, "eager", gpus, data_dir)
    env["FLUXBOT_USER_QUEUE_CAP"] = str(max(1, -(-commands // users)))
    process = await start_fluxbot(env, data_dir, capture=False)
    result: dict[str, Any] = {"commands": commands, "users": users, "spread_s": spread_s}
    try:
        await server.wait_ready(within_s=ready_within_s)
        await server.wait_for_commands("imagine", within_s=120)
        await _wait_log(log_path, lambda t: "loaded " in t, ready_within_s, "the model to load")
        warm = await server.slash(people[0], "imagine", {"prompt": "warm-up", "steps": 1})
        await server.wait_until(lambda: warm.followups, within_s=300, what="the warm-up result")
        log(f"bot ready; sending {commands} /imagine from {users} users over {spread_s:g} s")
        records = []
        gap = spread_s / max(1, commands - 1)
        begun = time.monotonic()
        for i in range(commands):
            user = people[i % users]
            options = {"prompt": f"burst {i}: a fox in the snow", "steps": 1}
            records.append(await server.slash(user, "imagine", options))
            await asyncio.sleep(max(0.0, begun + (i + 1) * gap - time.monotonic()))
        result["sent_over_s"] = time.monotonic() - begun
        await server.wait_until(
            lambda: all(r.acknowledged for r in records), within_s=120, what="every ack"
        )
        acks = [r.response.seconds_after_dispatch for r in records if r.response is not None]
        await server.wait_until(
            lambda: all(_queued_at(server, r) is not None for r in records),
            within_s=600,
            what="every queued message",
        )
        queued = [q for r in records if (q := _queued_at(server, r)) is not None]
        result["ack_s"] = spread(acks)
        result["acks_over_3s"] = sum(a > 3.0 for a in acks)
        result["queued_message_s"] = spread(queued)
    finally:
        await stop_fluxbot(process)
        await server.stop()
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    result["tracebacks_in_log"] = text.count("Traceback")
    return result


def render(result: dict[str, Any]) -> str:
    def ms(entry: dict[str, float | None]) -> str:
        return ", ".join(
            f"{k} {v * 1000:.0f} ms" if v is not None else f"{k} –" for k, v in entry.items()
        )

    return (
        f"{result['commands']} /imagine from {result['users']} users over "
        f"{result['sent_over_s']:.1f} s\n"
        f"ack (callback answered): {ms(result['ack_s'])}; over 3 s: {result['acks_over_3s']}\n"
        f"queued message: {ms(result['queued_message_s'])}\n"
        f"cpus {result.get('cpus')}, 1-min load average before/after "
        f"{result.get('load_avg_1m_before_after')}\n"
    )


def run_acks(
    *,
    model: str,
    gpus: str,
    work_dir: Path,
    out: Path | None,
    log: Log,
    commands: int,
    users: int,
    spread_s: float,
) -> dict[str, Any]:
    from bench.report import environment

    load_before = os.getloadavg()
    result = asyncio.run(
        run_burst(
            model=model,
            gpus=gpus,
            work_dir=work_dir,
            log=log,
            commands=commands,
            users=users,
            spread_s=spread_s,
        )
    )
    result["environment"] = environment("cpu")
    # The machine may be shared: the load average says how busy it was around the run.
    result["cpus"] = len(os.sched_getaffinity(0))
    result["load_avg_1m_before_after"] = (load_before[0], os.getloadavg()[0])
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
    return result
