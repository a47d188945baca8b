"""The capture gate: a CUDA graph capture and other threads' work on the card never overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fluxbot.devices.capture_gate import CaptureGate, gate_for

WAIT_S = 10.0


def _thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _stays_blocked(event: threading.Event, seconds: float = 0.2) -> bool:
    return not event.wait(seconds)


def test_a_capture_waits_for_another_threads_work_to_end() -> None:
    gate, working, release, captured = CaptureGate(), threading.Event(), threading.Event(), []

    def job() -> None:
        with gate.working():
            working.set()
            release.wait(WAIT_S)
            captured.append(("job ends", time.monotonic()))

    worker = _thread(job)
    assert working.wait(WAIT_S)
    entered = threading.Event()

    def capture() -> None:
        with gate.capturing():
            captured.append(("capture", time.monotonic()))
            entered.set()

    capturer = _thread(capture)
    assert _stays_blocked(entered)
    release.set()
    worker.join(WAIT_S)
    capturer.join(WAIT_S)
    assert [name for name, _ in captured] == ["job ends", "capture"]


def test_work_waits_while_another_thread_captures() -> None:
    gate, capturing, release = CaptureGate(), threading.Event(), threading.Event()

    def capture() -> None:
        with gate.capturing():
            capturing.set()
            release.wait(WAIT_S)

    capturer = _thread(capture)
    assert capturing.wait(WAIT_S)
    began = threading.Event()

    def job() -> None:
        with gate.working():
            began.set()

    worker = _thread(job)
    assert _stays_blocked(began)
    release.set()
    assert began.wait(WAIT_S)
    capturer.join(WAIT_S)
    worker.join(WAIT_S)


def test_a_thread_captures_inside_its_own_work_and_nests_work_in_its_capture() -> None:
    gate = CaptureGate()
    with gate.working(), gate.capturing(), gate.working():
        pass
    with gate.try_capturing() as free:
        assert free


def test_two_working_threads_that_both_want_to_capture_both_do() -> None:
    gate, both_working, done = CaptureGate(), threading.Barrier(2), []

    def job(name: str) -> None:
        with gate.working():
            both_working.wait(WAIT_S)
            with gate.capturing():
                done.append(name)

    threads = [_thread(lambda n=n: job(n)) for n in ("a", "b")]
    for thread in threads:
        thread.join(WAIT_S)
    assert sorted(done) == ["a", "b"]


def test_try_capturing_gives_up_at_once_while_another_thread_works() -> None:
    gate, working, release = CaptureGate(), threading.Event(), threading.Event()

    def job() -> None:
        with gate.working():
            working.set()
            release.wait(WAIT_S)

    worker = _thread(job)
    assert working.wait(WAIT_S)
    with gate.try_capturing() as free:
        assert not free
    release.set()
    worker.join(WAIT_S)
    with gate.try_capturing() as free:
        assert free


def test_a_waiting_capture_goes_before_new_work() -> None:
    # Writers first: with a queue of jobs the card is never idle, so a capture that let new
    # work in ahead of it could wait for ever.
    gate, working, release, order = CaptureGate(), threading.Event(), threading.Event(), []

    def job() -> None:
        with gate.working():
            working.set()
            release.wait(WAIT_S)

    first = _thread(job)
    assert working.wait(WAIT_S)

    def capture() -> None:
        with gate.capturing():
            order.append("capture")

    capturer = _thread(capture)
    while not gate._waiting:  # the capture is queued behind the first job
        time.sleep(0.01)

    def next_job() -> None:
        with gate.working():
            order.append("next job")

    second = _thread(next_job)
    time.sleep(0.2)
    assert order == []
    release.set()
    for thread in (first, capturer, second):
        thread.join(WAIT_S)
    assert order == ["capture", "next job"]


def test_one_gate_per_device() -> None:
    assert gate_for("cpu") is gate_for("cpu")
    assert gate_for("cuda:0") is not gate_for("cuda:1")
    assert gate_for("stand-in:0") is gate_for("stand-in:0")


def test_a_capture_gives_up_after_its_timeout_and_lets_held_back_work_go() -> None:
    gate, hung = CaptureGate(), threading.Event()

    def abandoned() -> None:
        with gate.working():
            hung.set()
            threading.Event().wait(30)  # a call that never returns

    _thread(abandoned)
    assert hung.wait(WAIT_S)
    began = threading.Event()
    outcome: list[bool] = []

    def capture() -> None:
        with gate.capturing(timeout_s=0.5) as free:
            outcome.append(free)

    capturer = _thread(capture)
    while not gate._waiting:
        time.sleep(0.01)

    def job() -> None:
        with gate.working():
            began.set()

    worker = _thread(job)
    assert _stays_blocked(began, 0.2)  # held back behind the waiting capture...
    capturer.join(WAIT_S)
    assert outcome == [False]
    assert began.wait(WAIT_S)  # ...and let go when it gave up
    worker.join(WAIT_S)
