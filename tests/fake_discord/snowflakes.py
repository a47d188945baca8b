"""Time-based snowflake ids, so discord.py's `snowflake_time` gives sensible creation times."""

from __future__ import annotations

import itertools
import time

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeGenerator:
    """Hands out unique, increasing snowflakes stamped with the current time."""

    def __init__(self, worker_id: int = 1) -> None:
        self._worker_id = worker_id & 0x1F
        self._increment = itertools.count()
        self._last = 0

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (now_ms << 22) | (self._worker_id << 17) | (next(self._increment) & 0xFFF)
        # Keep ids strictly increasing even if the clock stalls or the counter wraps.
        value = max(value, self._last + 1)
        self._last = value
        return value
