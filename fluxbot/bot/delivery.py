"""Posting to Discord that does not give up on the first hiccup.

discord.py retries 500/502/504 and 429 a few times by itself, but a 503, a timeout or a reset
connection fails at once. A result is the one thing a user waited for, so its post goes through
`with_retries`: transient failures are retried with exponential backoff (with jitter); what
still fails is left to the caller, which records the job as undelivered for the next start and
for `/show`. Each attempt builds its request afresh (files included), so nothing half-sent is
reused.

A post that failed may still have arrived (a timeout, a dropped connection, a 5xx), and trying
again must not post it twice. Channel posts carry a nonce derived from the job with
`enforce_nonce` (discord.py sets it whenever a nonce is given), so Discord itself returns the
first message for a few minutes. Webhook executions (interaction followups) take no nonce, so
`with_retries` can be given a `landed` look-up that finds the first attempt's message before
another attempt is made.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import discord

log = logging.getLogger(__name__)

T = TypeVar("T")
NONCE_PREFIX = "flux"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: `attempts` in all, each limited to `timeout_s`, waits growing from
    `first_delay_s` by `factor` up to `max_delay_s` (each wait randomised by ±20 %)."""

    attempts: int = 5
    timeout_s: float = 30.0
    first_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_delay_s, self.first_delay_s * self.factor ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)


def is_transient(error: BaseException) -> bool:
    """Worth another try: Discord's 5xx and 429, timeouts, dropped or reset connections."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500 or error.status == 429
    return isinstance(
        error, TimeoutError | asyncio.TimeoutError | aiohttp.ClientError | ConnectionError | OSError
    )


def may_have_landed(error: BaseException) -> bool:
    """Whether a failed post may have been stored by Discord all the same: a 5xx or an
    answer that never came; not a 429 or a connection that was never made."""
    if isinstance(error, discord.HTTPException):
        return error.status >= 500
    return not isinstance(error, aiohttp.ClientConnectorError)


def describe(error: BaseException) -> str:
    """A short line for the store and the log (never a traceback)."""
    if isinstance(error, discord.HTTPException):
        return f"Discord answered {error.status}: {error.text or error.__class__.__name__}"[:300]
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "Discord did not answer in time"
    return f"{error.__class__.__name__}: {error}"[:300]


def nonce_for(public_id: str) -> str:
    """The nonce of a job's result post: the same on every attempt and after a restart."""
    return f"{NONCE_PREFIX}{public_id}"[:25]


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    landed: Callable[[], Awaitable[T | None]] | None = None,
) -> T:
    """Run `attempt()` until it succeeds, retrying transient failures; the last error is raised.

    A non-transient error (403, 404, a bad request) is raised at once: trying again cannot help.
    After a failure that may have arrived all the same, `landed()` (if given) looks for what the
    attempt made; what it finds is returned instead of trying again.
    """
    for number in range(1, policy.attempts + 1):
        try:
            return await asyncio.wait_for(attempt(), policy.timeout_s)
        except Exception as exc:
            if not is_transient(exc):
                raise
            last = number == policy.attempts
            if not last:
                delay = policy.delay(number)
                log.warning(
                    "%s failed (%s), attempt %d of %d; retrying in %.1f s",
                    what,
                    describe(exc),
                    number,
                    policy.attempts,
                    delay,
                )
                await asyncio.sleep(delay)
            if landed is not None and may_have_landed(exc):
                found = await _look(landed, policy, what)
                if found is not None:
                    log.info("%s: the failed attempt had arrived; not posting again", what)
                    return found
            if last:
                raise
    raise AssertionError("unreachable: the loop returns or raises")


async def _look(
    landed: Callable[[], Awaitable[T | None]], policy: RetryPolicy, what: str
) -> T | None:
    """`landed()`, or None when the look-up itself fails (then the post is tried again: a
    possible duplicate is better than a lost result)."""
    try:
        return await asyncio.wait_for(landed(), policy.timeout_s)
    except Exception as exc:
        log.info("%s: could not check whether it arrived (%s)", what, describe(exc))
        return None
