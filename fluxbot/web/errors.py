"""What the studio shows for an error: the same messages as the bot's table, free of Discord.

Any `UserError` (fluxbot/core/errors.py) is shown as it is; the engine's input errors that are
not yet `UserError`s get the bot's wording; anything else gets a short code, logged with its
traceback, so no traceback reaches a browser.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from fluxbot.app.compose import PolicyRefused
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import RequestError
from fluxbot.engine.animation import GifTooLarge
from fluxbot.serving.scheduler import QueueFull, SchedulerClosed

__all__ = ["NotAllowed", "UserError", "message_for"]

log = logging.getLogger(__name__)

ERROR_TABLE: list[tuple[type[BaseException], Callable[[BaseException], str]]] = [
    (PolicyRefused, lambda e: f"🚫 {e}"),
    (RequestError, lambda e: f"That didn't work: {e}."),
    (QueueFull, lambda e: f"⏳ {e}"),
    (NotAllowed, lambda e: f"🔒 {e}"),
    (UserError, str),
    (SchedulerClosed, lambda e: "No new jobs are taken right now; try again in a minute."),
    (GifTooLarge, lambda e: f"The animation is too big: {e}."),
]


def message_for(error: BaseException) -> str:
    """The sentence for the person; an unexpected error's code is written to the log too."""
    for kind, render in ERROR_TABLE:
        if isinstance(error, kind):
            return render(error)
    code = secrets.token_hex(3)
    log.error("unexpected error %s", code, exc_info=(type(error), error, error.__traceback__))
    return f"Something went wrong on our side (error `{code}`); the admins can look it up."
