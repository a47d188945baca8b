"""The studio's errors go through the bot's table of user-facing messages (one table for all).

TODO(issue 14 follow-up): import `UserError` from fluxbot.core.errors once it exists there.
"""

from __future__ import annotations

from fluxbot.bot.cogs.errors import NotAllowed, UserError, user_message

__all__ = ["NotAllowed", "UserError", "message_for"]


def message_for(error: BaseException) -> str:
    """What the person sees: the table's sentence, or a short code that is also logged."""
    message, _code = user_message(error)
    return message
