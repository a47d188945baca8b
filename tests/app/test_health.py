"""The heartbeat file and the verdict `fluxbot health` draws from it."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fluxbot.app.health import Heartbeat, read_heartbeat, write_heartbeat

GOOD = Heartbeat(at=0.0, pid=1, connected=True, guilds=2, workers=2, workers_ready=1)


@pytest.mark.parametrize(
    ("beat", "age_s", "healthy", "needle"),
    [
        (GOOD, 5.0, True, "healthy: connected to 2 server(s), 1 of 2 worker(s) ready"),
        (GOOD, 120.0, False, "the last heartbeat is 120 s old (limit 90 s)"),
        (replace(GOOD, connected=False), 5.0, False, "not connected to Discord"),
        (replace(GOOD, workers_ready=0), 5.0, False, "none of 2 worker(s) is ready"),
    ],
)
def test_the_verdict_needs_a_fresh_connected_heartbeat_with_a_worker(
    tmp_path: Path, beat: Heartbeat, age_s: float, healthy: bool, needle: str
) -> None:
    now = time.time()
    write_heartbeat(tmp_path, replace(beat, at=now - age_s))
    verdict = read_heartbeat(tmp_path, 90.0, now=now)
    assert verdict.healthy is healthy and needle in verdict.line


def test_a_garbled_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / "heartbeat.json").write_text("{half")
    assert not read_heartbeat(tmp_path, 90.0).healthy


def test_fluxbot_health_exits_1_when_no_bot_runs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "fluxbot", "health"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "unhealthy: no heartbeat" in result.stdout
