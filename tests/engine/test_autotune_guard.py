"""The autotuner guard: a key's first call under the lock, later calls free."""

from __future__ import annotations

import threading

import pytest

from fluxbot.engine.autotune_guard import FirstCallGuard


def test_a_tuned_key_runs_while_another_key_is_being_tuned() -> None:
    guard = FirstCallGuard()
    calls: list[str] = []
    guard.run("a", lambda: calls.append("a"))
    tuning, release = threading.Event(), threading.Event()

    def slow_first_call() -> None:
        tuning.set()
        release.wait(5)
        calls.append("b")

    other = threading.Thread(target=guard.run, args=("b", slow_first_call))
    other.start()
    assert tuning.wait(5)
    guard.run("a", lambda: calls.append("a again"))  # would block if it took the lock
    release.set()
    other.join()
    assert calls == ["a", "a again", "b"] and guard.tuned() == {"a", "b"}


def test_a_failed_first_call_is_tried_again_next_time() -> None:
    guard = FirstCallGuard()

    def fails() -> None:
        raise RuntimeError("no kernel")

    with pytest.raises(RuntimeError):
        guard.run("k", fails)
    assert guard.tuned() == frozenset()
    guard.run("k", lambda: None)
    assert guard.tuned() == {"k"}
