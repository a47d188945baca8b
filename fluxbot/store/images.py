"""ImageRepo: the image rows of jobs (files themselves are `ImageFiles`' business)."""

from __future__ import annotations

from sqlalchemy import func, select

from fluxbot.store.db import Database
from fluxbot.store.models import Image


class ImageRepo:
    """Reads `images` rows; rows are written only through `Store.save_images`/`finish_job`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def for_job(self, job_id: int) -> list[Image]:
        """A job's images in batch order."""
        query = select(Image).where(Image.job_id == job_id).order_by(Image.index)
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def hashes(self, job_id: int) -> list[str]:
        """The sha256 of each image of a job, in batch order.

        The "same seed" promise: a reroll of a job with nothing else changed must give the
        parent's list exactly.
        """
        query = select(Image.sha256).where(Image.job_id == job_id).order_by(Image.index)
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def total_bytes(self) -> int:
        async with self._db.read() as session:
            return await session.scalar(select(func.coalesce(func.sum(Image.size_bytes), 0))) or 0

    async def known_paths(self) -> set[str]:
        """Every file path some row points at."""
        async with self._db.read() as session:
            return set(await session.scalars(select(Image.path)))
