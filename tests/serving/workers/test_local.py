"""LocalWorker: one device thread, progress bridging, failure isolation, OOM retry, timeouts."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from fluxbot.core.requests import JobStatus
from fluxbot.serving.events import JobEvent, ProgressEvent
from fluxbot.serving.job import Job
from fluxbot.serving.workers.base import WorkerState, WorkerUnavailable
from fluxbot.serving.workers.eta import SpeedModel
from fluxbot.serving.workers.local import LocalWorker
from tests.fakes_runner import FakeMemory, FakeRunner, encode_sizes, job, request, until


def make_worker(runner: FakeRunner, **kwargs) -> LocalWorker:  # type: ignore[no-untyped-def]
    kwargs.setdefault("memory", FakeMemory(runner.log))
    kwargs.setdefault("encode", encode_sizes)
    return LocalWorker("cpu", lambda: runner, **kwargs)


async def test_runs_on_one_device_thread_and_encodes_on_another() -> None:
    runner = FakeRunner()
    worker = make_worker(runner)
    events: list[JobEvent] = []
    threads: list[str] = []

    def sink(event: JobEvent) -> None:
        events.append(event)
        threads.append(threading.current_thread().name)

    outcomes = []
    for name in ("a", "b", "c"):
        [outcome] = await worker.run([job(name, count=2)], sink)
        outcomes.append(await worker.finish(outcome))
    await worker.close()

    assert [o.status for o in outcomes] == [JobStatus.DONE] * 3
    assert len({call.thread for call in runner.calls}) == 1
    assert runner.calls[0].thread.startswith("device-cpu")
    encoded_on = {f.decode().split("@")[1] for o in outcomes for f in o.files}
    assert len(outcomes[0].files) == 2 and not encoded_on & {runner.calls[0].thread}
    # Progress reaches the sink on the event loop thread, step by step.
    assert set(threads) == {threading.current_thread().name}
    steps = [e.step for e in events if isinstance(e, ProgressEvent) and e.job_id == "a"]
    assert steps == [1, 2, 3, 4]
    status = worker.status()
    assert status.jobs_done == 3 and status.images_done == 6
    assert status.mean_s_per_image is not None and status.mean_s_per_image > 0


async def test_a_failing_job_fails_alone_with_a_clean_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = FakeRunner(fail_prompts={"bad"})
    worker = make_worker(runner)
    with caplog.at_level(logging.ERROR, logger="fluxbot.serving.workers.local"):
        [failed] = await worker.run([job("bad")], lambda e: None)
    [ok] = await worker.run([job("good")], lambda e: None)
    state = worker.status().state
    await worker.close()

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and "boom" in failed.error
    assert "\n" not in failed.error and "Traceback" not in failed.error
    assert any(r.exc_info for r in caplog.records), "the traceback goes to the log"
    assert ok.status is JobStatus.DONE and state is WorkerState.IDLE


async def test_an_error_in_a_shared_batch_is_isolated_to_its_job() -> None:
    runner = FakeRunner(fail_prompts={"bad"})
    worker = make_worker(runner)
    outcomes = await worker.run([job("good1"), job("bad"), job("good2")], lambda e: None)
    await worker.close()
    assert [o.status for o in outcomes] == [JobStatus.DONE, JobStatus.FAILED, JobStatus.DONE]
    assert [o.job_id for o in outcomes] == ["good1", "bad", "good2"]


async def test_oom_is_retried_once_lighter_after_a_cleanup() -> None:
    runner = FakeRunner(oom_prompts={"big"}, oom_times=1)
    worker = make_worker(runner)
    [outcome] = await worker.run([job("big", count=3)], lambda e: None)
    await worker.close()

    assert outcome.status is JobStatus.DONE and len(outcome.result.images) == 3  # type: ignore[union-attr]
    assert runner.log == ["generate big", "cleanup", "generate big"]
    assert runner.calls[0].lighter is None
    lighter = runner.calls[1].lighter
    assert lighter.vae_tiling and lighter.split_batch
    assert worker.status().cleanups == 1


async def test_oom_twice_fails_clearly_and_the_worker_keeps_serving() -> None:
    runner = FakeRunner(oom_prompts={"big"}, oom_times=2)
    worker = make_worker(runner)
    [failed] = await worker.run([job("big")], lambda e: None)
    [ok] = await worker.run([job("small")], lambda e: None)
    await worker.close()

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and "out of memory" in failed.error
    assert "smaller size" in failed.error
    assert ok.status is JobStatus.DONE
    assert runner.log[:3] == ["generate big", "cleanup", "generate big"]


async def test_cancelling_the_running_job_stops_it_and_the_next_one_runs() -> None:
    permits = threading.Semaphore(0)
    runner = FakeRunner(permits=permits)
    worker = make_worker(runner)
    task = asyncio.create_task(worker.run([job("slow")], lambda e: None))
    await until(lambda: worker.status().current_job_id == "slow" and bool(runner.calls))
    assert worker.status().busy
    assert worker.cancel("slow") and not worker.cancel("other")
    [outcome] = await asyncio.wait_for(task, 10)
    permits.release()
    [ok] = await worker.run([job("next")], lambda e: None)
    await worker.close()
    assert outcome.status is JobStatus.CANCELLED
    assert ok.status is JobStatus.DONE


async def test_cancelling_one_job_of_a_batch_keeps_the_others() -> None:
    permits = threading.Semaphore(0)
    runner = FakeRunner(permits=permits)
    worker = make_worker(runner)
    events: list[JobEvent] = []
    task = asyncio.create_task(worker.run([job("keep"), job("drop")], events.append))
    await until(lambda: bool(runner.calls))
    assert worker.cancel("drop")
    permits.release()
    keep, drop = await asyncio.wait_for(task, 10)
    await worker.close()
    assert keep.status is JobStatus.DONE and drop.status is JobStatus.CANCELLED
    assert {e.job_id for e in events} == {"keep"}, "no progress for the cancelled job"


async def test_a_job_past_the_time_limit_is_interrupted() -> None:
    permits = threading.Semaphore(0)  # never released: only the interrupt ends the call
    runner = FakeRunner(permits=permits)
    loads: list[int] = []

    def factory() -> FakeRunner:
        loads.append(1)
        return runner

    worker = LocalWorker("cpu", factory, memory=FakeMemory(runner.log), timeout_s=0.1)
    [outcome] = await worker.run([job("slow")], lambda e: None)
    permits.release()
    [ok] = await worker.run([job("next")], lambda e: None)
    await worker.close()
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None and "0.1 s limit" in outcome.error
    assert ok.status is JobStatus.DONE
    assert len(loads) == 1, "a pipeline that honours the interrupt is kept"


async def test_a_hung_job_fails_and_a_fresh_thread_and_pipeline_take_over() -> None:
    runners: list[FakeRunner] = []

    def factory() -> FakeRunner:
        runner = FakeRunner(hang_prompts={"stuck"})
        runners.append(runner)
        return runner

    worker = LocalWorker("cpu", factory, memory=FakeMemory([]), timeout_s=0.1, hang_grace_s=0.1)
    try:
        [outcome] = await worker.run([job("stuck")], lambda e: None)
        assert worker.status().state in (WorkerState.LOADING, WorkerState.IDLE)
        [ok] = await worker.run([job("next")], lambda e: None)
    finally:
        for runner in runners:
            runner.unhang.set()
        await worker.close()
    assert outcome.status is JobStatus.FAILED and "limit" in (outcome.error or "")
    assert ok.status is JobStatus.DONE
    assert len(runners) == 2
    assert runners[1].calls[0].thread != runners[0].calls[0].thread
    assert runners[0].calls[0].prompts == ["stuck"] and runners[1].calls[0].prompts == ["next"]


async def test_cleanup_runs_between_jobs_on_the_device_thread_when_the_policy_says() -> None:
    runner = FakeRunner()
    worker = make_worker(runner, memory=FakeMemory(runner.log, clean_every=2, cleanup_s=0.25))
    for name in ("j1", "j2", "j3", "j4"):
        await worker.run([job(name)], lambda e: None)
    await until(lambda: worker.status().cleanups == 2)
    await worker.close()
    assert runner.log == [
        "generate j1",
        "generate j2",
        "cleanup",
        "generate j3",
        "generate j4",
        "cleanup",
    ]
    status = worker.status()
    assert status.last_cleanup_s == 0.25 and status.cleanup_total_s == 0.5


async def test_a_worker_whose_pipeline_fails_to_load_is_dead() -> None:
    def factory() -> FakeRunner:
        raise OSError("no weights here")

    worker = LocalWorker("cpu", factory, memory=FakeMemory([]))
    assert not await worker.wait_ready()
    assert worker.status().state is WorkerState.DEAD
    with pytest.raises(WorkerUnavailable):
        await worker.run([job("a")], lambda e: None)
    await worker.close()


async def test_previews_go_to_the_job_whose_image_they_show() -> None:
    worker = make_worker(FakeRunner())
    events: list[JobEvent] = []
    first = Job("a", 1, request("a"), want_preview=True)
    await worker.run([first, job("b")], events.append)
    await worker.close()
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert all(e.preview is not None for e in progress if e.job_id == "a")
    assert all(e.preview is None for e in progress if e.job_id == "b")
    assert len(progress) == 8


async def test_speed_is_measured_after_the_warm_up_batch() -> None:
    worker = make_worker(FakeRunner(), speed=SpeedModel(default_s_per_megapixel_step=100.0))
    guess = worker.estimate_s(request())
    await worker.run([job("warm-up")], lambda e: None)
    assert worker.estimate_s(request()) == guess
    await worker.run([job("measured")], lambda e: None)
    await worker.close()
    assert worker.estimate_s(request()) < guess


# -- the real tiny pipeline ---------------------------------------------------------------------


async def test_real_tiny_pipeline_runs_with_progress_and_png_files(tiny_runner) -> None:  # type: ignore[no-untyped-def]
    from fluxbot.engine.encoding import encode_result

    def encode(result):  # type: ignore[no-untyped-def]
        return encode_result(result, tiny_runner.model_name)

    worker = LocalWorker("cpu", lambda: tiny_runner, encode=encode, memory=FakeMemory([]))
    events: list[JobEvent] = []
    [outcome] = await worker.run([job("fox", count=2, seed=7)], events.append)
    outcome = await worker.finish(outcome)
    await worker.close()
    assert outcome.status is JobStatus.DONE
    assert [f.seed for f in outcome.files] == [7, 8]
    assert all(f.data.startswith(b"\x89PNG") for f in outcome.files)
    assert [e.step for e in events if isinstance(e, ProgressEvent)] == [1, 2, 3, 4]
    assert outcome.timings.denoise > 0 and outcome.timings.image_encode > 0


class SlowSteps:
    """The real runner, with a pause after each step so the loop's cancel lands mid-run."""

    def __init__(self, runner) -> None:  # type: ignore[no-untyped-def]
        self.runner = runner
        self.device = runner.device
        self.steps_seen: list[int] = []

    def generate(self, requests, *, on_step=None, **kwargs):  # type: ignore[no-untyped-def]
        def slow(progress):  # type: ignore[no-untyped-def]
            self.steps_seen.append(progress.step)
            if on_step is not None:
                on_step(progress)
            time.sleep(0.05)

        return self.runner.generate(requests, on_step=slow, **kwargs)


async def test_real_tiny_pipeline_is_cancelled_at_the_next_step(tiny_runner) -> None:  # type: ignore[no-untyped-def]
    slow = SlowSteps(tiny_runner)
    worker = LocalWorker("cpu", lambda: slow, memory=FakeMemory([]))

    def on_event(event: JobEvent) -> None:
        if isinstance(event, ProgressEvent) and event.step == 1:
            worker.cancel(event.job_id)

    [outcome] = await worker.run([job("fox", steps=8)], on_event)
    assert len(slow.steps_seen) < 8, "stopped before the end"
    [ok] = await worker.run([job("fox again")], lambda e: None)
    await worker.close()
    assert outcome.status is JobStatus.CANCELLED
    assert ok.status is JobStatus.DONE


async def test_a_batch_behind_another_waits_for_the_device_and_its_time_limit_starts_there() -> (
    None
):
    ahead = threading.Event()
    runner = FakeRunner(gates={("a", 5): ahead})
    worker = make_worker(runner, timeout_s=0.3)
    first = asyncio.ensure_future(worker.run([job("a")], lambda e: None))
    await until(lambda: worker.status().current_job_ids == ("a",))
    second = asyncio.ensure_future(worker.run([job("b")], lambda e: None))
    await asyncio.sleep(0.05)
    assert worker.status().current_job_ids == ("a",) and runner.log == ["generate a"]
    await asyncio.sleep(0.35)  # b has waited past its limit, but not on the device
    ahead.set()
    [a], [b] = await asyncio.wait_for(asyncio.gather(first, second), 10)
    await worker.close()
    assert a.status is JobStatus.FAILED and "limit" in (a.error or "")
    assert b.status is JobStatus.DONE
    assert runner.log == ["generate a", "generate b"]


async def test_a_batch_behind_a_hung_one_is_given_back_and_the_fresh_thread_serves() -> None:
    runners: list[FakeRunner] = []

    def factory() -> FakeRunner:
        runners.append(FakeRunner(hang_prompts={"stuck"}))
        return runners[-1]

    worker = LocalWorker("cpu", factory, memory=FakeMemory([]), timeout_s=0.1, hang_grace_s=0.1)
    try:
        stuck = asyncio.ensure_future(worker.run([job("stuck")], lambda e: None))
        await until(lambda: worker.status().current_job_ids == ("stuck",))
        with pytest.raises(WorkerUnavailable):
            await asyncio.wait_for(worker.run([job("behind")], lambda e: None), 10)
        [failed] = await stuck
        [ok] = await worker.run([job("behind")], lambda e: None)
    finally:
        for runner in runners:
            runner.unhang.set()
        await worker.close()
    assert failed.status is JobStatus.FAILED and ok.status is JobStatus.DONE
    assert runners[0].log == ["generate stuck"] and runners[1].log == ["generate behind"]
