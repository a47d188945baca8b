"""Reach Discord before anything else depends on it: one clear line instead of a traceback.

discord.py's own login raises raw aiohttp errors on DNS failure or a refused connection, and
waits without a limit on a server that accepts and never answers. This check asks for the
bot's own user once, retrying with backoff where a retry can help (DNS, refused, reset, 5xx)
inside one time budget, which also bounds a server that never answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from fluxbot.core.errors import UserError

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 4.0, 8.0)


class DiscordUnreachable(UserError):
    """Discord (or the configured API base) could not be reached; `str()` is one line."""


class TokenRejected(UserError):
    """Discord answered 401: the token is wrong or was reset."""


@dataclass(frozen=True, slots=True)
class _Attempt:
    retry: bool
    reason: str


def _classify(exc: BaseException) -> _Attempt:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _Attempt(True, f"the host name does not resolve ({exc.os_error})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return _Attempt(True, "connection refused")
        return _Attempt(True, f"cannot connect ({exc.os_error})")
    if isinstance(exc, aiohttp.ClientError):
        return _Attempt(True, f"{type(exc).__name__}: {exc}")
    return _Attempt(False, f"{type(exc).__name__}: {exc}")


async def check_login(api_base: str, token: str, budget_s: float) -> None:
    """Return once Discord accepts the token; raise `DiscordUnreachable` or `TokenRejected`.

    Attempts are spaced by `BACKOFF_S` and all of them, waits included, end by `budget_s`.
    """
    url = f"{api_base.rstrip('/')}/users/@me"
    started = time.monotonic()
    deadline = started + budget_s
    attempts = 0
    reason = "no attempt made"
    async with aiohttp.ClientSession() as session:
        while True:
            attempts += 1
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(remaining):
                    async with session.get(url, headers={"Authorization": f"Bot {token}"}) as reply:
                        if reply.status == 401:
                            raise TokenRejected("Discord refused the token: check DISCORD_TOKEN")
                        if reply.status < 500:
                            return  # reachable; discord.py reports any other answer itself
                        reason, retry = f"HTTP {reply.status}", True
            except TimeoutError:
                reason = f"no answer within {budget_s:.0f} s"
                retry = False
            except (aiohttp.ClientError, OSError) as exc:
                attempt = _classify(exc)
                reason, retry = attempt.reason, attempt.retry
            wait = BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)]
            if not retry or attempts > len(BACKOFF_S) or time.monotonic() + wait >= deadline:
                break
            log.warning("cannot reach Discord at %s: %s; retrying in %.0f s", url, reason, wait)
            await asyncio.sleep(wait)
    elapsed = time.monotonic() - started
    raise DiscordUnreachable(
        f"cannot reach Discord at {url}: {reason} ({attempts} attempt(s) in {elapsed:.0f} s); "
        "check the network, or FLUXBOT_DISCORD_API_BASE if you changed it"
    )
