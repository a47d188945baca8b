"""Crash recovery: what a dead process left behind is requeued or failed, and orphans are swept."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from fluxbot.config import RecoverPolicy
from fluxbot.core.requests import JobStatus
from fluxbot.store import Store

from .helpers import encoded, make_request

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _leave_a_mess(store: Store) -> dict[str, int]:
    """Jobs in every state, as a process killed mid-work would leave them."""
    done = await store.jobs.create(1, make_request("done"))
    await store.jobs.mark_running(done.id, "cuda:0")
    await store.finish_job(done, [encoded(1)])
    queued = await store.jobs.create(2, make_request("queued"))
    running = await store.jobs.create(1, make_request("running"))
    await store.jobs.mark_running(running.id, "cuda:1")
    return {"done": done.id, "queued": queued.id, "running": running.id}


async def _reopen(store: Store) -> Store:
    await store.close()
    return await Store.open(str(store.db.engine.url), store.data_dir)


async def test_requeue_policy_puts_interrupted_jobs_back_oldest_first(store: Store) -> None:
    ids = await _leave_a_mess(store)
    store = await _reopen(store)
    try:
        recovery = await store.recover_interrupted(RecoverPolicy.REQUEUE)
        assert [job.id for job in recovery.queued] == [ids["queued"], ids["running"]]
        assert recovery.failed == []
        running = await store.jobs.get(ids["running"])
        assert running is not None
        assert (running.status, running.device, running.started_at) == (
            JobStatus.QUEUED,
            None,
            None,
        )
        done = await store.jobs.get(ids["done"])
        assert done is not None and done.status is JobStatus.DONE
        # A requeued job can be claimed again by a worker.
        assert await store.jobs.mark_running(ids["running"], "cuda:0") is not None
    finally:
        await store.close()


async def test_fail_policy_fails_every_interrupted_job_with_a_notice(store: Store) -> None:
    ids = await _leave_a_mess(store)
    recovery = await store.recover_interrupted(RecoverPolicy.FAIL)
    assert {job.id for job in recovery.failed} == {ids["queued"], ids["running"]}
    assert recovery.queued == []
    for job_id in (ids["queued"], ids["running"]):
        job = await store.jobs.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error and "restarted" in job.error and job.finished_at is not None
    assert await store.jobs.queue() == []


async def test_a_job_that_keeps_crashing_the_bot_is_given_up(store: Store) -> None:
    job = await store.jobs.create(1, make_request())
    for _ in range(3):
        await store.jobs.mark_running(job.id, "cuda:0")
        await store.recover_interrupted(RecoverPolicy.REQUEUE, max_attempts=3)
    current = await store.jobs.get(job.id)
    assert current is not None and current.status is JobStatus.FAILED
    assert current.error and "3 times" in current.error


async def test_startup_sweeps_files_without_rows_and_temp_files(store: Store) -> None:
    ids = await _leave_a_mess(store)
    kept = (await store.images.for_job(ids["done"]))[0].path
    store.files.write("images/2025/01/crashed-0-abc.png", b"renamed but never committed")
    (store.data_dir / "images/2025/01/.crashed-1.png.deadbeef.tmp").write_bytes(b"half")
    startup = await store.startup(RecoverPolicy.REQUEUE)
    assert startup.orphans_removed == [
        "images/2025/01/.crashed-1.png.deadbeef.tmp",
        "images/2025/01/crashed-0-abc.png",
    ]
    assert store.files.list_files() == [kept]
    assert [job.id for job in startup.recovery.queued] == [ids["queued"], ids["running"]]


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from fluxbot.store import EncodedImage, Store
    import fluxbot.store.results as results
    from fluxbot.core.requests import GenerationRequest

    async def die(*args):
        os._exit(9)  # the power goes out after the files are renamed, before the commit

    async def main():
        store = await Store.open(sys.argv[1], sys.argv[2])
        job = await store.jobs.create(5, GenerationRequest(prompt="doomed", seed=3, count=2))
        await store.jobs.mark_running(job.id, "cuda:0")
        print(job.id, flush=True)
        results._replace_rows = die
        images = [EncodedImage(bytes([i]) * 100, seed=3 + i, width=8, height=8) for i in (0, 1)]
        await store.finish_job(job, images)

    asyncio.run(main())
    """
)


async def test_a_real_crash_mid_save_leaves_no_row_and_is_recovered(
    db_url: str, data_dir: Path
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_SCRIPT,
        db_url,
        str(data_dir),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 9, stderr.decode()
    job_id = int(stdout.split()[0])
    left = files_on_disk(data_dir)
    assert len(left) == 2  # both files were renamed into place before the crash

    store = await Store.open(db_url, data_dir)
    try:
        assert await store.images.for_job(job_id) == []  # no row points at anything
        startup = await store.startup(RecoverPolicy.REQUEUE)
        assert sorted(startup.orphans_removed) == sorted(left)
        assert files_on_disk(data_dir) == []
        assert [job.id for job in startup.recovery.queued] == [job_id]
        job = await store.jobs.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 1
    finally:
        await store.close()


def files_on_disk(data_dir: Path) -> list[str]:
    root = data_dir / "images"
    return sorted(p.relative_to(data_dir).as_posix() for p in root.rglob("*") if p.is_file())
