"""DeviceThread: calls run one at a time, in order, on one daemon thread."""

from __future__ import annotations

import threading

import pytest

from fluxbot.serving.workers.device_thread import DeviceThread


def test_calls_run_in_order_on_one_daemon_thread_and_errors_reach_the_caller() -> None:
    device = DeviceThread("device-test")
    seen: list[tuple[int, str, bool]] = []

    def call(n: int) -> int:
        thread = threading.current_thread()
        seen.append((n, thread.name, thread.daemon))
        return n * 10

    futures = [device.submit(lambda n=n: call(n)) for n in range(5)]
    failing = device.submit(lambda: 1 / 0)
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40]
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    assert [n for n, _, _ in seen] == [0, 1, 2, 3, 4]
    assert {(name, daemon) for _, name, daemon in seen} == {("device-test", True)}
    device.shutdown()


def test_a_cancelled_call_is_skipped_and_shutdown_stops_after_the_calls_submitted() -> None:
    device = DeviceThread("device-test")
    gate = threading.Event()
    ran: list[str] = []
    blocking = device.submit(gate.wait)
    skipped = device.submit(lambda: ran.append("skipped"))
    last = device.submit(lambda: ran.append("last"))
    assert skipped.cancel()
    device.shutdown()
    gate.set()
    assert blocking.result(timeout=10) is True
    last.result(timeout=10)
    assert ran == ["last"]
    device._thread.join(timeout=10)
    assert not device._thread.is_alive()


def test_each_call_works_inside_the_devices_capture_gate() -> None:
    from fluxbot.devices.capture_gate import CaptureGate

    gate = CaptureGate()
    device = DeviceThread("device-gated", gate=gate)
    inside, release = threading.Event(), threading.Event()
    future = device.submit(lambda: (inside.set(), release.wait(10)))
    try:
        assert inside.wait(10)
        with gate.try_capturing() as free:
            assert not free  # a cleanup's empty_cache would break a capture
    finally:
        release.set()
    future.result(timeout=10)
    with gate.try_capturing() as free:
        assert free
    device.shutdown()
