"""The running bot's heartbeat file, and the verdict `fluxbot health` (a container's
healthcheck) draws from it: fresh, connected to Discord, and at least one worker ready."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HEARTBEAT_FILE = "heartbeat.json"
HEARTBEAT_INTERVAL_S = 10.0
DEFAULT_MAX_AGE_S = 90.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the bot writes every `HEARTBEAT_INTERVAL_S` seconds."""

    at: float  # Unix time of the write
    pid: int
    connected: bool
    guilds: int
    workers: int
    workers_ready: int


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    healthy: bool
    line: str


def write_heartbeat(data_dir: Path, beat: Heartbeat) -> None:
    """Replace the heartbeat file atomically (a reader never sees half of it)."""
    path = data_dir / HEARTBEAT_FILE
    temp = path.with_name(f".{HEARTBEAT_FILE}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(temp, path)


def read_heartbeat(data_dir: Path, max_age_s: float, now: float | None = None) -> HealthVerdict:
    """Healthy only when the file is younger than `max_age_s`, connected, with a worker ready."""
    path = data_dir / HEARTBEAT_FILE
    try:
        beat = Heartbeat(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return HealthVerdict(False, f"unhealthy: no heartbeat at {path} (is the bot running?)")
    except (OSError, ValueError, TypeError) as exc:
        return HealthVerdict(False, f"unhealthy: cannot read {path} ({exc})")
    age = (time.time() if now is None else now) - beat.at
    if age > max_age_s:
        return HealthVerdict(
            False, f"unhealthy: the last heartbeat is {age:.0f} s old (limit {max_age_s:.0f} s)"
        )
    if not beat.connected:
        return HealthVerdict(False, "unhealthy: not connected to Discord")
    if beat.workers_ready == 0:
        return HealthVerdict(
            False, f"unhealthy: none of {beat.workers} worker(s) is ready (loading or failed)"
        )
    return HealthVerdict(
        True,
        f"healthy: connected to {beat.guilds} server(s), {beat.workers_ready} of "
        f"{beat.workers} worker(s) ready, heartbeat {age:.0f} s ago",
    )
