"""Dozens of jobs finishing at once: writers wait their turn, no "database is locked"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxbot.core.requests import JobStatus
from fluxbot.store import Store

from .helpers import encoded, make_request

WRITERS = 50


async def _one_job(store: Store, n: int) -> int:
    job = await store.jobs.create(n % 7, make_request(f"job {n}", seed=n, count=2))
    running = await store.jobs.mark_running(job.id, f"cuda:{n % 4}")
    assert running is not None
    await store.jobs.set_messages(job.id, status_message_id=10_000 + n)
    await store.jobs.for_user(n % 7)  # readers interleave with the writers
    done = await store.finish_job(job, [encoded(n * 10), encoded(n * 10 + 1)])
    await store.jobs.set_messages(job.id, result_message_id=20_000 + n)
    assert done.status is JobStatus.DONE
    return job.id


async def test_fifty_concurrent_writers_on_two_engines(db_url: str, data_dir: Path) -> None:
    # Two stores on one file: separate engines and pools, as two processes would have.
    first = await Store.open(db_url, data_dir)
    second = await Store.open(db_url, data_dir, migrate=False)
    try:
        job_ids = await asyncio.gather(
            *(_one_job(first if n % 2 else second, n) for n in range(WRITERS))
        )
        assert len(set(job_ids)) == WRITERS
        counts = await first.jobs.waiting_counts()
        assert counts == {}
        total = sum([(await first.jobs.for_user(user)).total for user in range(7)])
        assert total == WRITERS
        assert len(first.files.list_files()) == 2 * WRITERS
        assert len(await first.images.known_paths()) == 2 * WRITERS
        for n in (0, 17, 49):
            job = await second.jobs.by_message_id(20_000 + n)
            assert job is not None and job.prompt == f"job {n}" and len(job.images) == 2
    finally:
        await first.close()
        await second.close()
