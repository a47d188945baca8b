"""Errors the store raises on purpose (anything else is a bug or the disk)."""

from __future__ import annotations

from fluxbot.core.errors import UserError


class StoreError(Exception):
    """Base of the store's own errors."""


class JobNotFound(StoreError, UserError, LookupError):
    """The job is gone (deleted with its user, or pruned) or never existed."""

    def __init__(self, job_id: int | str) -> None:
        self.job_id = job_id
        super().__init__("That job no longer exists: it was deleted, or never existed.")

    def __repr__(self) -> str:
        return f"JobNotFound({self.job_id!r})"


class MigrationError(StoreError, UserError):
    """The database schema could not be brought to the wanted revision (told to the owner)."""
