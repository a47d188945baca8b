"""Errors the store raises on purpose (anything else is a bug or the disk)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""


class JobNotFound(StoreError, LookupError):
    """The job is gone (deleted with its user, or pruned) or never existed."""

    def __init__(self, job_id: int | str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")


class MigrationError(StoreError):
    """The database schema could not be brought to the wanted revision."""
