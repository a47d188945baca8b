"""The one base class of errors a person is meant to read: `str()` is the sentence they see.

Code at any layer raises a subclass; every adapter renders any `UserError` as it is (the Discord
error handler, the CLI's one-line error), so no user-facing error can be missing from the table.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message is a complete sentence for the person who asked (or the owner)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotAllowed(UserError):
    """The person may not do this (an admin command, someone else's job, a banned user)."""
