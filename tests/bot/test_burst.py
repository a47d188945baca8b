"""Acks under load: 200 /imagine from 50 users within a few seconds are all acknowledged and
all queued (the bot defers before any database or prompt work). The latencies are printed for
the record (run with -s); tests never assert timings."""

from __future__ import annotations

import asyncio
import statistics

from sqlalchemy import func, select

from fluxbot.store.models import JobRow
from tests.bot.conftest import BotHarness

USERS = 50
COMMANDS = 200


async def test_a_burst_of_200_commands_is_all_acknowledged(harness: BotHarness) -> None:
    server = harness.server
    users = [server.add_user(f"burst{i}") for i in range(USERS)]
    bot = await harness.start(user_queue_cap=COMMANDS // USERS)
    bot.engine.scheduler.pause()  # the device is elsewhere in production; measure the bot
    records = []
    for i in range(COMMANDS):
        user = users[i % USERS]
        records.append(await server.slash(user, "imagine", {"prompt": f"burst {i}", "steps": 1}))
        await asyncio.sleep(0.01)
    await server.wait_until(
        lambda: all(r.acknowledged for r in records), within_s=60, what="every ack"
    )
    latencies = sorted(r.response.seconds_after_dispatch for r in records)

    async def queued() -> int:
        async with bot.store.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(JobRow)) or 0)

    for _ in range(600):  # the work after the acks takes its time on a busy machine
        if await queued() == COMMANDS:
            break
        await asyncio.sleep(0.5)
    assert await queued() == COMMANDS, "every acknowledged command queued its job"
    q = statistics.quantiles(latencies, n=100)
    print(
        f"\nack latency over {COMMANDS} /imagine from {USERS} users: "
        f"p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
