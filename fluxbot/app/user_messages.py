"""One table from error to the sentence a person sees, for every front end (Discord, the studio).

Any `UserError` (fluxbot/core/errors.py) is shown as its message, so a new user-facing error is
covered by construction; the rows above it only add an emoji or a lead-in. Anything else gets a
short code, shown to the person and written to the log with its traceback, so no traceback ever
reaches a user. An adapter may add rows for its own framework's errors (`extra`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence

from fluxbot.app.admission import Refused
from fluxbot.app.permissions import PermissionDenied
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import RequestError
from fluxbot.engine.animation import GifTooLarge
from fluxbot.prompts.policy import PolicyRefused
from fluxbot.serving.scheduler import QueueFull, SchedulerClosed
from fluxbot.store.usage import LimitReached

log = logging.getLogger(__name__)

Render = Callable[[BaseException], str]
Row = tuple[type[BaseException], Render]


def _invalid_option(exc: BaseException) -> str:
    return f"That didn't work: {exc}."


ERROR_TABLE: list[Row] = [
    (PermissionDenied, lambda e: f"🔒 {e}"),
    (LimitReached, lambda e: f"⏳ {e}"),
    (Refused, lambda e: f"🚫 {e}"),
    (PolicyRefused, lambda e: f"🚫 {e}"),
    (RequestError, _invalid_option),
    (QueueFull, lambda e: f"⏳ {e}"),
    (SchedulerClosed, lambda e: f"⏸️ {e}"),
    (NotAllowed, lambda e: f"🔒 {e}"),
    (GifTooLarge, lambda e: f"The animation is too big to upload: {e}."),
    (UserError, str),
]


def user_message(error: BaseException, extra: Sequence[Row] = ()) -> tuple[str, str | None]:
    """(message, code): code is None for known errors, else a short id also written to the log.
    `extra` rows are tried after the shared table."""
    for kind, render in (*ERROR_TABLE, *extra):
        if isinstance(error, kind):
            return render(error), None
    code = secrets.token_hex(3)
    log.error("unexpected error %s", code, exc_info=(type(error), error, error.__traceback__))
    return f"Something went wrong on our side (error `{code}`); the admins can look it up.", code
