"""One malformed gateway event costs that event, never the process.

discord.py parses each DISPATCH in a plain function (`ConnectionState.parse_*`); an exception
there (an interaction without `data.custom_id`, a non-numeric id, a member without `user`,
permissions that are not a number) travels up through the gateway loop and ends `Client.start`,
so one bad event stopped the bot. Each parser is wrapped: a failure is logged in one line (the
traceback only at debug level) and the event dropped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Parser = Callable[[Any], Any]
_GUARDED = "__fluxbot_guarded__"


def _event_id(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("id", "message_id", "guild_id"):
            if key in data:
                return f"{key}={str(data[key])[:32]!r}"
    return "no id"


def guarded(event: str, parser: Parser) -> Parser:
    """`parser`, but an exception is logged and swallowed (the event is dropped)."""
    if getattr(parser, _GUARDED, False):
        return parser

    @functools.wraps(parser)
    def run(data: Any) -> Any:
        try:
            return parser(data)
        except Exception as exc:
            log.warning(
                "dropped a malformed %s event (%s): %s: %s",
                event,
                _event_id(data),
                type(exc).__name__,
                str(exc)[:200],
            )
            log.debug("malformed %s event", event, exc_info=True)
            return None

    setattr(run, _GUARDED, True)
    return run


def guard_parsers(parsers: MutableMapping[str, Parser]) -> None:
    """Wrap every gateway event parser in place (the gateway reads this same mapping)."""
    for event, parser in list(parsers.items()):
        parsers[event] = guarded(event, parser)
