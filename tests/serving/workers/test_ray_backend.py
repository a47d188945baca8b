"""The Ray backend: remote GPU workers behind the same scheduler, on a local Ray instance.

One Ray instance per test session (CPU only, two fake GPUs) and one tiny-random replica actor
per fake GPU, shared by the tests; each test wraps the actors in fresh `RayWorker`s on its own
event loop. Skipped where the `ray` extra is not installed.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import Iterator
from functools import partial

import pytest

ray = pytest.importorskip("ray")

from PIL import Image  # noqa: E402

from fluxbot.config import ConfigError, load_settings  # noqa: E402
from fluxbot.core.requests import JobStatus  # noqa: E402
from fluxbot.engine.encoding import EncodedImage, encode_result, read_parameters  # noqa: E402
from fluxbot.engine.pipeline import TINY_RANDOM  # noqa: E402
from fluxbot.serving.events import (  # noqa: E402
    FinishedEvent,
    JobEvent,
    PositionEvent,
    ProgressEvent,
    StartedEvent,
)
from fluxbot.serving.handle import JobHandle  # noqa: E402
from fluxbot.serving.job import JobOutcome  # noqa: E402
from fluxbot.serving.scheduler import Scheduler  # noqa: E402
from fluxbot.serving.workers.base import Worker  # noqa: E402
from fluxbot.serving.workers.local import LocalWorker  # noqa: E402
from fluxbot.serving.workers.ray_backend import (  # noqa: E402
    RayBackendError,
    RayWorker,
    build_ray_workers,
    connect,
    plan_slots,
)
from tests.fakes_runner import job  # noqa: E402

READY_S = 120.0
LONG = {"width": 512, "height": 512, "steps": 50}
"""About 1.5 s on a CPU core with the tiny model: long enough to cancel or kill mid-way."""


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance with two fake GPUs, started once per session."""
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="fluxbot-tests",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def replicas(ray_cluster: None) -> list[RayWorker]:
    """`build_ray_workers` on the test cluster: one tiny-random actor per fake GPU."""
    settings = load_settings(backend="ray", model=TINY_RANDOM, ray_address="auto")
    workers = build_ray_workers(settings)
    assert all(isinstance(w, RayWorker) for w in workers)
    return workers  # type: ignore[return-value]


@pytest.fixture
async def workers(replicas: list[RayWorker]) -> list[RayWorker]:
    """Fresh workers on this test's event loop, over the session's actors (not killed after)."""
    fresh = [RayWorker(w.device, w.spawn, actor=w.actor, owns_actor=False) for w in replicas]
    ready = await asyncio.wait_for(asyncio.gather(*(w.wait_ready() for w in fresh)), READY_S)
    assert ready == [True, True]
    return fresh


def record(scheduler: Scheduler) -> list[JobEvent]:
    events: list[JobEvent] = []
    scheduler.add_listener(events.append)
    return events


async def first_progress(handle: JobHandle) -> ProgressEvent:
    async for event in handle.events(coalesce=False):
        if isinstance(event, ProgressEvent):
            return event
    raise AssertionError(f"job {handle.job_id} finished without progress")


async def finish_all(scheduler: Scheduler, handles: list[JobHandle]) -> list[JobOutcome]:
    try:
        return await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), READY_S)
    finally:
        await scheduler.shutdown(grace_s=5)


def pixels(image: EncodedImage) -> bytes:
    with Image.open(io.BytesIO(image.data)) as opened:
        return opened.convert("RGB").tobytes()


# -- without a cluster -------------------------------------------------------------------------


def node(name: str, ip: str, resources: dict[str, float], alive: bool = True) -> dict[str, object]:
    """One entry of `ray.nodes()`, with the fields the backend reads."""
    return {"NodeID": name * 8, "NodeManagerAddress": ip, "Alive": alive, "Resources": resources}


def test_one_replica_per_gpu_interleaved_across_hosts_skipping_cpu_and_dead_nodes() -> None:
    nodes = [
        node("a", "10.0.0.1", {"GPU": 2.0}),
        node("b", "10.0.0.2", {"CPU": 8.0}),
        node("c", "10.0.0.3", {"GPU": 1.0}),
        node("d", "10.0.0.4", {"GPU": 4.0}, alive=False),
    ]
    slots = plan_slots(nodes)
    assert [s.label for s in slots] == [
        "ray:10.0.0.1/gpu0",
        "ray:10.0.0.3/gpu0",
        "ray:10.0.0.1/gpu1",
    ]
    assert [s.node_id for s in slots] == ["a" * 8, "c" * 8, "a" * 8]


def test_without_ray_installed_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    settings = load_settings(backend="ray")
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[ray\]"') as caught:
        build_ray_workers(settings)
    assert "\n" not in str(caught.value)


def test_a_cluster_without_gpus_is_refused_with_one_line(
    ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu_only = [node("a", "10.0.0.1", {"CPU": 4.0})]
    monkeypatch.setattr(ray, "nodes", lambda: cpu_only)
    with pytest.raises(RayBackendError, match="has no GPU: join GPU hosts with `ray start"):
        build_ray_workers(load_settings(backend="ray"))


def test_an_unreachable_cluster_is_refused_at_once_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RayBackendError, match="cannot reach the Ray cluster") as caught:
        connect("127.0.0.1:1")
    assert "'127.0.0.1:1'" in str(caught.value) and "\n" not in str(caught.value)


def test_ray_client_addresses_are_refused_as_they_cannot_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RayBackendError, match=r"Ray Client \(ray://\) cannot carry"):
        connect("ray://head:10001")


# -- on the local Ray instance ---------------------------------------------------------------


async def test_two_users_jobs_spread_over_both_remote_workers_with_progress_in_order(
    workers: list[RayWorker],
) -> None:
    scheduler = Scheduler(workers)
    events = record(scheduler)
    await scheduler.start()
    handles = [
        scheduler.submit(job(f"{user}-{n}", user_id=user, prompt=f"fox {user} {n}", seed=n))
        for user in (1, 2)
        for n in range(2)
    ]
    outcomes = await finish_all(scheduler, handles)

    assert [o.status for o in outcomes] == [JobStatus.DONE] * 4
    assert {o.device for o in outcomes} == {w.device for w in workers}
    started = [e.job_id for e in events if isinstance(e, StartedEvent)]
    assert started == ["1-0", "2-0", "1-1", "2-1"], "round-robin across users"
    for handle, outcome in zip(handles, outcomes, strict=True):
        steps = [
            e.step for e in events if isinstance(e, ProgressEvent) and e.job_id == handle.job_id
        ]
        assert steps == [1, 2, 3, 4]
        [image] = outcome.files
        assert isinstance(image, EncodedImage) and image.format == "png"
        assert read_parameters(image.data)["seed"] == handle.job.request.seed
        assert outcome.result is not None and outcome.result.seeds == [handle.job.request.seed]
    assert sum(w.status().jobs_done for w in workers) == 4


async def test_same_outcomes_events_and_pixels_as_the_local_backend(
    workers: list[RayWorker],
    tiny_runner,  # type: ignore[no-untyped-def]
) -> None:
    local = LocalWorker(
        "cpu",
        lambda: tiny_runner,
        encode=partial(encode_result, model=TINY_RANDOM),
    )

    async def scenario(worker: Worker) -> tuple[list[JobOutcome], list[JobEvent]]:
        """A done job and a job cancelled mid-run, on one worker."""
        scheduler = Scheduler([worker])
        events = record(scheduler)
        await scheduler.start()
        done = scheduler.submit(job("done", prompt="a lighthouse", seed=7, count=2))
        long = scheduler.submit(job("long", prompt="a storm", **LONG))
        await first_progress(long)
        assert scheduler.cancel("long")
        outcomes = await finish_all(scheduler, [done, long])
        return outcomes, [e for e in events if not isinstance(e, PositionEvent)]

    local_outcomes, local_events = await scenario(local)
    remote_outcomes, remote_events = await scenario(workers[0])

    def shape(events: list[JobEvent]) -> dict[str, list[str]]:
        """Each job's own events in order. How two jobs' events interleave is not part of the
        contract: `done` encodes its PNGs off the device while `long` already runs (and may be
        cancelled first), so its FinishedEvent can come before or after long's."""
        per_job: dict[str, list[str]] = {}
        for event in events:
            if not isinstance(event, ProgressEvent):
                per_job.setdefault(event.job_id, []).append(type(event).__name__)
        return per_job

    assert shape(remote_events) == shape(local_events)
    assert shape(local_events)["long"][-1] == "FinishedEvent"
    for mine, theirs in zip(remote_outcomes, local_outcomes, strict=True):
        assert (mine.status, mine.error) == (theirs.status, theirs.error)
    assert remote_outcomes[1].status is JobStatus.CANCELLED
    ray_files, local_files = remote_outcomes[0].files, local_outcomes[0].files
    assert [(f.format, f.width, f.height, f.seed) for f in ray_files] == [
        (f.format, f.width, f.height, f.seed) for f in local_files
    ]
    assert [read_parameters(f.data) for f in ray_files] == [
        read_parameters(f.data) for f in local_files
    ]
    assert [pixels(f) for f in ray_files] == [pixels(f) for f in local_files]
    finished = [e for e in remote_events if isinstance(e, FinishedEvent)]
    assert [e.outcome.device for e in finished] == [workers[0].device] * 2


async def test_cancelling_a_running_remote_job_stops_it_and_the_worker_moves_on(
    workers: list[RayWorker],
) -> None:
    worker = workers[1]
    scheduler = Scheduler([worker])
    await scheduler.start()
    long = scheduler.submit(job("long", prompt="a storm", **LONG))
    after = scheduler.submit(job("after", user_id=2))
    progress = await first_progress(long)
    assert scheduler.cancel("long")
    outcomes = await finish_all(scheduler, [long, after])

    assert progress.total == LONG["steps"]
    assert [o.status for o in outcomes] == [JobStatus.CANCELLED, JobStatus.DONE]
    assert outcomes[0].files == [] and outcomes[0].error is None


async def test_a_killed_worker_requeues_its_job_which_completes_elsewhere_and_it_rejoins(
    workers: list[RayWorker],
) -> None:
    scheduler = Scheduler(workers)  # requeue_limit=1: once to the front, then a clear failure
    events = record(scheduler)
    await scheduler.start()
    by_device = {w.device: w for w in workers}

    async def kill_when_running(handle: JobHandle, spare: str | None = None) -> RayWorker:
        """Kill the actor running `handle` at its first step (on another device than `spare`)."""
        started_elsewhere = False
        async for event in handle.events(coalesce=False):
            if isinstance(event, StartedEvent):
                started_elsewhere = event.device != spare
            elif isinstance(event, ProgressEvent) and started_elsewhere:
                break
        assert handle.device is not None and handle.device != spare
        victim = by_device[handle.device]
        ray.kill(victim.actor, no_restart=False)
        return victim

    survivor_job = scheduler.submit(job("kill-once", prompt="a storm", **LONG))
    first_victim = await kill_when_running(survivor_job)
    [done] = await asyncio.wait_for(asyncio.gather(survivor_job.result()), READY_S)

    assert done.status is JobStatus.DONE and len(done.files) == 1
    assert done.device != first_victim.device, "it completed on the other worker"
    starts = [e.device for e in events if isinstance(e, StartedEvent) and e.job_id == "kill-once"]
    assert starts == [first_victim.device, done.device]

    # The killed actor restarts and its worker rejoins; a job lost twice fails with a message.
    assert await asyncio.wait_for(first_victim.wait_ready(), READY_S)
    twice = scheduler.submit(job("kill-twice", prompt="a storm", **LONG))
    victim = await kill_when_running(twice)
    await kill_when_running(twice, spare=victim.device)  # requeued at the front, lost again
    [failed] = await finish_all(scheduler, [twice])

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.startswith(
        "the device was lost while running it (WorkerUnavailable: the Ray worker ray:"
    )
    assert "\n" not in failed.error


async def test_workers_rejoin_after_restarts_and_run_jobs_again(workers: list[RayWorker]) -> None:
    scheduler = Scheduler(workers)
    await scheduler.start()
    handles = [scheduler.submit(job(f"again-{n}", user_id=n, seed=n)) for n in range(4)]
    outcomes = await finish_all(scheduler, handles)
    assert [o.status for o in outcomes] == [JobStatus.DONE] * 4
    assert {o.device for o in outcomes} == {w.device for w in workers}


async def test_a_run_abandoned_by_the_bot_interrupts_the_remote_pipeline(
    workers: list[RayWorker],
) -> None:
    """Shutdown past its grace cancels the dispatcher: `ray.cancel` reaches the pipeline."""
    worker = workers[0]
    started = time.monotonic()
    await worker.run([job("whole", prompt="a storm", **LONG)], lambda event: None)
    whole_s = time.monotonic() - started

    stepping = asyncio.Event()
    running = asyncio.create_task(
        worker.run([job("dropped", prompt="a storm", **LONG)], lambda event: stepping.set())
    )
    await stepping.wait()
    started = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    [after] = await worker.run([job("after")], lambda event: None)
    # Without the interrupt, "after" would wait for the rest of the 50 steps on the device.
    assert after.status is JobStatus.DONE
    assert time.monotonic() - started < whole_s / 2
