"""Scheduler: fairness, caps, cancellation, progress, ETAs, several devices, drain."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from fluxbot.core.requests import JobStatus
from fluxbot.core.styles import LoraSpec
from fluxbot.serving.events import (
    FinishedEvent,
    JobEvent,
    JobEventStream,
    PositionEvent,
    ProgressEvent,
    StartedEvent,
)
from fluxbot.serving.job import Job, JobOutcome
from fluxbot.serving.scheduler import QueueFull, Scheduler, SchedulerClosed
from fluxbot.serving.workers.base import WorkerState, WorkerUnavailable
from fluxbot.serving.workers.eta import SpeedModel
from fluxbot.serving.workers.local import LocalWorker
from tests.fakes_runner import FakeLoras, FakeMemory, FakeRunner, encode_sizes, job, until

WAIT_S = 10.0


def local_worker(runner: FakeRunner, **kwargs) -> LocalWorker:  # type: ignore[no-untyped-def]
    kwargs.setdefault("memory", FakeMemory(runner.log))
    kwargs.setdefault("encode", encode_sizes)
    return LocalWorker(runner.device, lambda: runner, **kwargs)


class StartOrder:
    """Records the order in which jobs start (a global listener, like the store's)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.job_ids: list[str] = []
        self.finished: list[str] = []
        scheduler.add_listener(self._on_event)

    def _on_event(self, event: JobEvent) -> None:
        if isinstance(event, StartedEvent):
            self.job_ids.append(event.job_id)
        elif isinstance(event, FinishedEvent):
            self.finished.append(event.job_id)


@pytest.fixture
async def permits() -> AsyncIterator[threading.Semaphore]:
    """Each fake generate call waits for one permit; released generously at the end."""
    semaphore = threading.Semaphore(0)
    yield semaphore
    semaphore.release(100)


async def results(handles: Sequence) -> list[JobOutcome]:  # type: ignore[type-arg]
    return await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), WAIT_S)


# -- fairness and caps -----------------------------------------------------------------------------


async def test_one_users_ten_jobs_do_not_starve_anothers_one(
    permits: threading.Semaphore,
) -> None:
    runner = FakeRunner(permits=permits)
    scheduler = Scheduler([local_worker(runner)], user_queue_cap=10)
    order = StartOrder(scheduler)
    await scheduler.start()
    a_handles = [scheduler.submit(job(f"a{i}", user_id=1)) for i in range(10)]
    await until(lambda: order.job_ids == ["a0"])  # A's first job is already on the GPU
    b_handle = scheduler.submit(job("b0", user_id=2))
    permits.release(11)
    await results([*a_handles, b_handle])
    await scheduler.shutdown()
    assert order.job_ids.index("b0") in (1, 2), order.job_ids
    assert order.job_ids.index("b0") == 2, "A's queued a1 had its turn before B arrived"


async def test_caps_refuse_with_a_message_naming_the_cap_and_the_waiting_count() -> None:
    scheduler = Scheduler([local_worker(FakeRunner())], user_queue_cap=2, global_queue_cap=3)
    scheduler.pause()
    await scheduler.start()
    scheduler.submit(job("a0", user_id=1))
    scheduler.submit(job("a1", user_id=1))
    with pytest.raises(QueueFull) as user_full:
        scheduler.submit(job("a2", user_id=1))
    assert "2 job(s) waiting" in str(user_full.value) and "limit is 2" in str(user_full.value)
    assert user_full.value.scope == "user"
    scheduler.submit(job("b0", user_id=2))
    with pytest.raises(QueueFull) as global_full:
        scheduler.submit(job("c0", user_id=3))
    assert "3 job(s) are waiting" in str(global_full.value)
    assert "limit is 3" in str(global_full.value) and global_full.value.scope == "global"
    # A recovered job is never refused.
    scheduler.submit(Job("r0", 1, job("r0").request, priority_front=True))
    left = await scheduler.shutdown()
    assert [j.job_id for j in left] == ["r0", "a0", "b0", "a1"]


# -- cancellation ----------------------------------------------------------------------------------


async def test_cancelling_a_queued_job_takes_it_out_of_the_queue() -> None:
    runner = FakeRunner()
    scheduler = Scheduler([local_worker(runner)])
    scheduler.pause()
    await scheduler.start()
    handles = [scheduler.submit(job(name)) for name in ("j1", "j2", "j3")]
    assert scheduler.place("j3").position == 3  # type: ignore[union-attr]
    assert scheduler.cancel("j2")
    assert not scheduler.cancel("j2") and not scheduler.cancel("nope")
    assert scheduler.place("j3").position == 2  # type: ignore[union-attr]
    scheduler.resume()
    outcomes = await results(handles)
    await scheduler.shutdown()
    assert [o.status for o in outcomes] == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    assert [c.prompts for c in runner.calls] == [["j1"], ["j3"]]


async def test_cancelling_a_running_job_stops_it_and_the_gpu_moves_on(
    permits: threading.Semaphore,
) -> None:
    runner = FakeRunner(permits=permits)
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    first, second = scheduler.submit(job("j1")), scheduler.submit(job("j2"))
    await until(lambda: first.status is JobStatus.RUNNING and bool(runner.calls))
    assert scheduler.cancel("j1")
    assert (await asyncio.wait_for(first.result(), WAIT_S)).status is JobStatus.CANCELLED
    await until(lambda: second.status is JobStatus.RUNNING)
    permits.release()
    assert (await asyncio.wait_for(second.result(), WAIT_S)).status is JobStatus.DONE
    await scheduler.shutdown()


# -- progress, positions and ETAs ------------------------------------------------------------------


async def test_events_arrive_in_order_and_end_with_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler([local_worker(FakeRunner())])
    scheduler.pause()
    await scheduler.start()
    handle = scheduler.submit(job("j1", count=2))
    stream = handle.events(coalesce=False)
    scheduler.resume()
    with caplog.at_level(logging.INFO, logger="fluxbot.serving.scheduler"):
        events = [event async for event in stream]
    await scheduler.shutdown()
    [line] = [r.getMessage() for r in caplog.records if "job j1" in r.getMessage()]
    for part in ("on cpu", "queued", "text", "denoise", "decode", "encode", "total"):
        assert part in line

    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "PositionEvent",
        "StartedEvent",
        "ProgressEvent",
        "ProgressEvent",
        "ProgressEvent",
        "ProgressEvent",
        "FinishedEvent",
    ]
    assert [e.step for e in events if isinstance(e, ProgressEvent)] == [1, 2, 3, 4]
    final = events[-1]
    assert isinstance(final, FinishedEvent) and final.outcome.status is JobStatus.DONE
    files = final.outcome.files
    assert len(files) == 2 and all(f.startswith(b"256x256@encode-") for f in files)
    timings = final.outcome.timings
    assert timings.total >= timings.queued >= 0 and timings.denoise > 0


async def test_coalesced_and_throttled_stream_keeps_order_and_the_final_event() -> None:
    runner = FakeRunner(step_s=0.01)
    scheduler = Scheduler([local_worker(runner)])
    scheduler.pause()
    await scheduler.start()
    handle = scheduler.submit(job("j1", steps=20))
    stream = handle.events(min_interval_s=0.05)
    scheduler.resume()
    events = [event async for event in stream]
    await scheduler.shutdown()
    steps = [e.step for e in events if isinstance(e, ProgressEvent)]
    assert steps == sorted(set(steps)) and 0 < len(steps) < 20
    assert isinstance(events[-1], FinishedEvent)
    # A late subscriber gets the outcome at once.
    assert [type(e) for e in [e async for e in handle.events()]] == [FinishedEvent]


async def test_the_first_step_is_not_held_back_by_the_queue_update_before_it() -> None:
    # A job faster than the edit interval: its first progress event (the preview) must still
    # come out at once after the queue position, and later steps wait for the interval.
    stream = JobEventStream(min_interval_s=3600.0)
    stream.push(PositionEvent("j", 1, 0.5, 0.0))
    first = await asyncio.wait_for(anext(stream), WAIT_S)
    stream.push(StartedEvent("j", "cpu", 1))
    stream.push(ProgressEvent("j", 1, 4))
    assert isinstance(await asyncio.wait_for(anext(stream), WAIT_S), StartedEvent)
    step = await asyncio.wait_for(anext(stream), WAIT_S)
    assert isinstance(first, PositionEvent) and isinstance(step, ProgressEvent)
    stream.push(ProgressEvent("j", 2, 4))
    with pytest.raises(TimeoutError):  # throttled: the interval is an hour
        await asyncio.wait_for(anext(stream), 0.2)


async def test_positions_and_etas_count_down(permits: threading.Semaphore) -> None:
    # Jobs of ~80 ms, so the time of a job ahead dwarfs the noise of measuring it; the default
    # guess (5 s per 256x256 image) is pessimistic and the first measurement replaces it.
    runner = FakeRunner(permits=permits, step_s=0.02)
    speed = SpeedModel(default_s_per_megapixel_step=20.0)
    scheduler = Scheduler([local_worker(runner, speed=speed)], user_queue_cap=10)
    await scheduler.start()
    handles = [scheduler.submit(job(f"j{i}")) for i in range(4)]
    last = handles[-1]
    positions = []
    stream = last.events(coalesce=False)
    places = []
    for done in range(3):
        await until(lambda d=done: handles[d].status is JobStatus.RUNNING)
        places.append(scheduler.place("j3"))
        permits.release()
        await asyncio.wait_for(handles[done].result(), WAIT_S)
    permits.release()
    async for event in stream:
        if isinstance(event, PositionEvent):
            positions.append(event.position)
    await scheduler.shutdown()
    assert [p.position for p in places] == [3, 2, 1]  # type: ignore[union-attr]
    etas = [p.eta_s for p in places]  # type: ignore[union-attr]
    assert etas[0] > etas[1] > etas[2] > 0
    assert positions == sorted(positions, reverse=True) and positions[-1] == 1
    assert scheduler.place("j3") is None


async def test_eta_counts_the_jobs_ahead_under_round_robin_and_the_workers() -> None:
    def etas(workers: int) -> dict[str, tuple[int, float]]:
        scheduler = Scheduler(
            [local_worker(FakeRunner()) for _ in range(workers)], user_queue_cap=10
        )
        scheduler.pause()
        for i in range(3):
            scheduler.submit(job(f"a{i}", user_id=1))
        scheduler.submit(job("b0", user_id=2))
        plan = {jid: scheduler.place(jid) for jid in ("a0", "b0", "a1", "a2")}
        return {jid: (p.position, p.eta_s) for jid, p in plan.items() if p is not None}

    one, two = etas(1), etas(2)
    unit = one["a0"][1]
    assert [one[j][0] for j in ("a0", "b0", "a1", "a2")] == [1, 2, 3, 4]
    assert [one[j][1] / unit for j in ("a0", "b0", "a1", "a2")] == pytest.approx([1, 2, 3, 4])
    assert [two[j][1] / unit for j in ("a0", "b0", "a1", "a2")] == pytest.approx([1, 1, 2, 2])


# -- batching --------------------------------------------------------------------------------------


async def test_small_compatible_jobs_are_batched_in_round_robin_order() -> None:
    runner = FakeRunner()
    scheduler = Scheduler([local_worker(runner)], batch_small_jobs=True, user_queue_cap=10)
    scheduler.pause()
    await scheduler.start()
    handles = [
        scheduler.submit(job("a0", user_id=1)),
        scheduler.submit(job("a1", user_id=1, count=2)),
        scheduler.submit(job("a2", user_id=1)),
        scheduler.submit(job("b0", user_id=2, width=512, height=512)),
        scheduler.submit(job("c0", user_id=3)),
        scheduler.submit(job("d0", user_id=4, width=640, height=640)),
        scheduler.submit(job("d1", user_id=4, width=640, height=640)),
    ]
    scheduler.resume()
    outcomes = await results(handles)
    await scheduler.shutdown()
    assert all(o.status is JobStatus.DONE for o in outcomes)
    # Dispatch order is a0 b0 c0 d0 a1 d1 a2: a0 takes the next compatible jobs up to 4 images.
    assert [c.prompts for c in runner.calls] == [
        ["a0", "c0", "a1"],
        ["b0"],
        ["d0"],
        ["d1"],
        ["a2"],
    ]
    images = {o.job_id: len(o.result.images) for o in outcomes}  # type: ignore[union-attr]
    assert images == {"a0": 1, "a1": 2, "a2": 1, "b0": 1, "c0": 1, "d0": 1, "d1": 1}


async def test_image_jobs_batch_only_with_like_jobs() -> None:
    from fluxbot.core.edits import ImageEdit, Operation

    def vary(strength: float, sha: str = "ab" * 32) -> ImageEdit:
        return ImageEdit(Operation.VARY, source_sha256=sha, strength=strength, source=b"x")

    runner = FakeRunner()
    scheduler = Scheduler([local_worker(runner)], batch_small_jobs=True, user_queue_cap=10)
    scheduler.pause()
    await scheduler.start()
    handles = [
        scheduler.submit(job("text", user_id=1)),
        scheduler.submit(job("subtle1", user_id=2, edit=vary(0.35))),
        scheduler.submit(job("strong", user_id=3, edit=vary(0.7))),
        scheduler.submit(job("subtle2", user_id=4, edit=vary(0.35, "cd" * 32))),
        scheduler.submit(job("text2", user_id=5)),
    ]
    scheduler.resume()
    await results(handles)
    await scheduler.shutdown()
    assert sorted(c.prompts for c in runner.calls) == [
        ["strong"],
        ["subtle1", "subtle2"],
        ["text", "text2"],
    ]


async def test_without_batching_each_job_runs_alone() -> None:
    runner = FakeRunner()
    scheduler = Scheduler([local_worker(runner)], batch_small_jobs=False)
    scheduler.pause()
    await scheduler.start()
    handles = [scheduler.submit(job(f"j{i}", user_id=i)) for i in range(3)]
    scheduler.resume()
    await results(handles)
    await scheduler.shutdown()
    assert [c.prompts for c in runner.calls] == [["j0"], ["j1"], ["j2"]]


# -- failures --------------------------------------------------------------------------------------


async def test_oom_twice_fails_the_job_and_the_next_one_runs() -> None:
    runner = FakeRunner(oom_prompts={"big"}, oom_times=2)
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    big, small = scheduler.submit(job("big")), scheduler.submit(job("small", user_id=2))
    big_outcome, small_outcome = await results([big, small])
    status = scheduler.status()
    await scheduler.shutdown()
    assert big_outcome.status is JobStatus.FAILED and "out of memory" in (big_outcome.error or "")
    assert small_outcome.status is JobStatus.DONE
    assert status.workers[0].cleanups >= 1 and status.workers[0].state == "idle"


async def test_a_hung_job_times_out_and_the_queue_moves_on() -> None:
    runner = FakeRunner(hang_prompts={"stuck"})
    worker = local_worker(runner, timeout_s=0.1, hang_grace_s=0.1)
    scheduler = Scheduler([worker])
    await scheduler.start()
    try:
        stuck, after = scheduler.submit(job("stuck")), scheduler.submit(job("after"))
        stuck_outcome, after_outcome = await results([stuck, after])
    finally:
        runner.unhang.set()
        await scheduler.shutdown()
    assert stuck_outcome.status is JobStatus.FAILED and "limit" in (stuck_outcome.error or "")
    assert after_outcome.status is JobStatus.DONE


class FlakyWorker(LocalWorker):
    """Loses its first batch, as a remote worker whose host went away would."""

    lost = 0

    async def run(self, batch: Sequence[Job], events):  # type: ignore[no-untyped-def, override]
        if not self.lost:
            self.lost += 1
            raise WorkerUnavailable("the host went away")
        return await super().run(batch, events)


async def test_a_lost_batch_is_requeued_at_the_front_once() -> None:
    runner = FakeRunner()
    worker = FlakyWorker("cpu", lambda: runner, memory=FakeMemory([]))
    scheduler = Scheduler([worker])
    order = StartOrder(scheduler)
    scheduler.pause()
    await scheduler.start()
    handles = [scheduler.submit(job("a0", user_id=1)), scheduler.submit(job("b0", user_id=2))]
    scheduler.resume()
    outcomes = await results(handles)
    await scheduler.shutdown()
    assert [o.status for o in outcomes] == [JobStatus.DONE, JobStatus.DONE]
    assert order.job_ids == ["a0", "a0", "b0"]


# -- several devices, status, pause, shutdown ------------------------------------------------------


async def test_two_devices_share_the_queue_and_are_both_busy(
    permits: threading.Semaphore,
) -> None:
    runners = [FakeRunner(permits=permits), FakeRunner(permits=permits)]
    scheduler = Scheduler([local_worker(r) for r in runners], user_queue_cap=10)
    await scheduler.start()
    handles = [scheduler.submit(job(f"j{i}", user_id=i % 3)) for i in range(6)]
    await until(lambda: all(w.status().busy for w in scheduler.workers))
    status = scheduler.status()
    running = [w.current_job_id for w in status.workers]
    assert None not in running and running[0] != running[1]
    assert status.running == 2 and status.queued == 4
    assert sum(w.queue_depth for w in status.workers) == 4
    assert [e.position for e in status.queue if e.state is JobStatus.QUEUED] == [1, 2, 3, 4]
    permits.release(6)
    outcomes = await results(handles)
    await scheduler.shutdown()
    assert all(o.status is JobStatus.DONE for o in outcomes)
    assert all(r.calls for r in runners), "both devices ran jobs"
    assert len({o.device for o in outcomes}) == 1  # both are "cpu" here, named alike


async def test_a_style_job_goes_to_the_free_worker_that_has_its_lora_loaded() -> None:
    ink = LoraSpec("/loras/ink.safetensors", 0.8)
    plain, holder = FakeRunner(device="cuda:0"), FakeRunner(device="cuda:1")
    holder.loras = FakeLoras(frozenset({ink.source}))
    # The worker without the LoRA comes first, so without the preference it would take it.
    scheduler = Scheduler([local_worker(plain), local_worker(holder)], user_queue_cap=10)
    await scheduler.start()
    await until(lambda: all(w.status().state is WorkerState.IDLE for w in scheduler.workers))
    for i in range(3):
        outcome = await results([scheduler.submit(job(f"ink{i}", user_id=i, lora=ink))])
        assert outcome[0].status is JobStatus.DONE
    glow = LoraSpec("/loras/glow.safetensors")
    other = await results([scheduler.submit(job("glow", lora=glow))])
    await scheduler.shutdown()
    assert [c.prompts for c in holder.calls][:3] == [["ink0"], ["ink1"], ["ink2"]]
    assert not any(c.prompts[0].startswith("ink") for c in plain.calls)
    assert other[0].status is JobStatus.DONE  # a LoRA nobody holds runs wherever is free


async def test_jobs_of_different_styles_never_share_a_batch(
    permits: threading.Semaphore,
) -> None:
    runner = FakeRunner(permits=permits)
    scheduler = Scheduler([local_worker(runner)], user_queue_cap=10, batch_small_jobs=True)
    await scheduler.start()
    first = scheduler.submit(job("block"))
    await until(lambda: bool(runner.calls))
    ink = LoraSpec("/loras/ink.safetensors")
    handles = [
        scheduler.submit(job("ink-a", user_id=2, lora=ink)),
        scheduler.submit(job("plain", user_id=3)),
        scheduler.submit(job("ink-b", user_id=4, lora=ink)),
    ]
    permits.release(10)
    await results([first, *handles])
    await scheduler.shutdown()
    batches = [c.prompts for c in runner.calls[1:]]
    assert ["ink-a", "ink-b"] in batches and ["plain"] in batches


async def test_pause_stops_dispatch_until_resume() -> None:
    runner = FakeRunner()
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    scheduler.pause()
    handle = scheduler.submit(job("j1"))
    await asyncio.sleep(0.05)
    assert handle.status is JobStatus.QUEUED and not runner.calls
    assert scheduler.status().paused
    scheduler.resume()
    assert (await asyncio.wait_for(handle.result(), WAIT_S)).status is JobStatus.DONE
    await scheduler.shutdown()


async def test_shutdown_hands_back_the_running_and_queued_jobs(
    permits: threading.Semaphore,
) -> None:
    runner = FakeRunner(permits=permits)
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    handles = [scheduler.submit(job(f"j{i}", user_id=i)) for i in range(3)]
    await until(lambda: handles[0].status is JobStatus.RUNNING and bool(runner.calls))
    left = await asyncio.wait_for(scheduler.shutdown(grace_s=0.05, stop_wait_s=5), WAIT_S)
    assert [j.job_id for j in left] == ["j0", "j1", "j2"]
    assert left[0].priority_front and not left[1].priority_front
    assert all(h.outcome.status is JobStatus.QUEUED for h in handles)  # type: ignore[union-attr]
    with pytest.raises(SchedulerClosed):
        scheduler.submit(job("late"))
    assert await scheduler.shutdown() == [], "reported once"


async def test_shutdown_lets_the_running_job_finish_within_the_grace(
    permits: threading.Semaphore,
) -> None:
    runner = FakeRunner(permits=permits)
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    first, second = scheduler.submit(job("j0")), scheduler.submit(job("j1", user_id=2))
    await until(lambda: first.status is JobStatus.RUNNING and bool(runner.calls))
    closing = asyncio.create_task(scheduler.shutdown(grace_s=WAIT_S))
    await asyncio.sleep(0.02)
    permits.release()
    left = await asyncio.wait_for(closing, WAIT_S)
    assert [j.job_id for j in left] == ["j1"]
    assert first.outcome.status is JobStatus.DONE and first.outcome.files  # type: ignore[union-attr]
    assert second.outcome.status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_when_every_device_is_dead_jobs_fail_and_submits_are_refused() -> None:
    def factory() -> FakeRunner:
        raise OSError("no weights")

    scheduler = Scheduler([LocalWorker("cpu", factory, memory=FakeMemory([]))])
    scheduler.pause()
    await scheduler.start()
    handle = scheduler.submit(job("j1"))
    outcome = await asyncio.wait_for(handle.result(), WAIT_S)
    assert outcome.status is JobStatus.FAILED and outcome.error == "no GPU is available"
    with pytest.raises(SchedulerClosed):
        scheduler.submit(job("j2"))
    await scheduler.shutdown()


# -- the real tiny pipeline ------------------------------------------------------------------------


async def test_real_tiny_pipeline_behind_the_scheduler(tiny_runner) -> None:  # type: ignore[no-untyped-def]
    from fluxbot.engine.encoding import encode_result

    def encode(result):  # type: ignore[no-untyped-def]
        return encode_result(result, tiny_runner.model_name)

    worker = LocalWorker("cpu", lambda: tiny_runner, encode=encode, memory=FakeMemory([]))
    scheduler = Scheduler([worker], batch_small_jobs=True)
    order = StartOrder(scheduler)
    scheduler.pause()
    await scheduler.start()
    a = scheduler.submit(job("a red fox", user_id=1, seed=3))
    b = scheduler.submit(job("a blue cat", user_id=2, seed=5, count=2))
    stream = a.events(coalesce=False)
    scheduler.resume()
    events = [event async for event in stream]
    a_out, b_out = await results([a, b])
    await scheduler.shutdown()
    assert a_out.status is JobStatus.DONE and b_out.status is JobStatus.DONE
    assert [f.seed for f in a_out.files] == [3] and [f.seed for f in b_out.files] == [5, 6]
    assert order.job_ids == [a.job_id, b.job_id]
    assert [e.step for e in events if isinstance(e, ProgressEvent)] == [1, 2, 3, 4]
    assert isinstance(events[-1], FinishedEvent)
    assert scheduler.status().workers[0].images_done == 3


# -- handing the next batch over during the last step ----------------------------------------------


async def test_the_next_job_is_handed_over_during_the_last_step_and_no_earlier() -> None:
    at_last_step, before_return = threading.Event(), threading.Event()
    runner = FakeRunner(gates={("one", 4): at_last_step, ("one", 5): before_return})
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    one = scheduler.submit(job("one", user_id=1))
    two = scheduler.submit(job("two", user_id=2))
    await until(lambda: one.status is JobStatus.RUNNING and bool(runner.calls))
    await asyncio.sleep(0.05)
    assert two.status is JobStatus.QUEUED  # steps 1-3: the fair queue still decides
    at_last_step.set()
    await until(lambda: two.status is JobStatus.RUNNING)
    # Two waits on the device thread behind one; a third job stays in the fair queue.
    three = scheduler.submit(job("three", user_id=3))
    await asyncio.sleep(0.05)
    assert three.status is JobStatus.QUEUED and runner.log == ["generate one"]
    before_return.set()
    outcomes = await results([one, two, three])
    await scheduler.shutdown()
    assert [o.status for o in outcomes] == [JobStatus.DONE] * 3
    assert runner.log == ["generate one", "generate two", "generate three"]
    assert len({call.thread for call in runner.calls}) == 1


async def test_a_handed_over_job_can_be_cancelled_before_it_starts() -> None:
    before_return = threading.Event()
    runner = FakeRunner(gates={("one", 5): before_return})
    scheduler = Scheduler([local_worker(runner)])
    await scheduler.start()
    one, two = scheduler.submit(job("one", user_id=1)), scheduler.submit(job("two", user_id=2))
    await until(lambda: two.status is JobStatus.RUNNING)
    assert scheduler.cancel("two")
    before_return.set()
    outcomes = await results([one, two])
    await scheduler.shutdown()
    assert [o.status for o in outcomes] == [JobStatus.DONE, JobStatus.CANCELLED]
