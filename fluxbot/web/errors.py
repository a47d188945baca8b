"""What the studio shows for an error: the shared table of user-facing messages
(fluxbot/app/user_messages.py), the same one the Discord bot uses.

Any `UserError` (fluxbot/core/errors.py) is shown as its sentence; anything else gets a short
code, logged with its traceback, so no traceback reaches a browser.
"""

from __future__ import annotations

from fluxbot.app.user_messages import user_message
from fluxbot.core.errors import NotAllowed, UserError

__all__ = ["NotAllowed", "UserError", "message_for"]


def message_for(error: BaseException) -> str:
    """The sentence for the person; an unexpected error's code is written to the log too."""
    message, _code = user_message(error)
    return message
