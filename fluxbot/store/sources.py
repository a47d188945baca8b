"""SourceRepo: the images jobs start from (uploads and parents' images), one file per user and
hash, written durably before their row (as job images are)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from fluxbot.store.db import Database
from fluxbot.store.files import ImageFiles
from fluxbot.store.models import SourceImage
from fluxbot.store.users import ensure_user

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class SourceMissing(LookupError):
    """A job's source image is no longer stored (its user's data was deleted)."""


class SourceRepo:
    """Stores and reads `source_images` rows and their files."""

    def __init__(self, db: Database, files: ImageFiles) -> None:
        self._db = db
        self.files = files

    async def save(
        self, user_id: int, sha256: str, data: bytes, fmt: str, width: int, height: int
    ) -> SourceImage:
        """Keep `data` as one of `user_id`'s source images; storing the same bytes twice is a
        no-op. The file is durable before the row commits."""
        if fmt not in EXTENSIONS:
            raise ValueError(f"source format {fmt!r}: one of {', '.join(EXTENSIONS)}")
        existing = await self.get(user_id, sha256)
        if existing is not None and await asyncio.to_thread(self.files.exists, existing.path):
            return existing
        relative = self.files.source_path(user_id, sha256, EXTENSIONS[fmt])
        await asyncio.to_thread(self.files.write, relative, data)
        async with self._db.write() as session:
            await ensure_user(session, user_id)
            row = await session.scalar(
                select(SourceImage).where(
                    SourceImage.user_id == user_id, SourceImage.sha256 == sha256
                )
            )
            if row is None:
                row = SourceImage(
                    user_id=user_id,
                    sha256=sha256,
                    path=relative,
                    format=fmt,
                    width=width,
                    height=height,
                    size_bytes=len(data),
                )
                session.add(row)
                await session.flush()
            return row

    async def get(self, user_id: int, sha256: str) -> SourceImage | None:
        query = select(SourceImage).where(
            SourceImage.user_id == user_id, SourceImage.sha256 == sha256
        )
        async with self._db.read() as session:
            return await session.scalar(query)

    async def load(self, user_id: int, sha256: str) -> bytes:
        """The bytes of a stored source image; `SourceMissing` if it is gone."""
        row = await self.get(user_id, sha256)
        if row is None:
            raise SourceMissing(sha256)
        try:
            return await asyncio.to_thread(self.files.read, row.path)
        except FileNotFoundError:
            raise SourceMissing(sha256) from None

    async def for_user(self, user_id: int) -> list[SourceImage]:
        query = select(SourceImage).where(SourceImage.user_id == user_id).order_by(SourceImage.id)
        async with self._db.read() as session:
            return list(await session.scalars(query))

    async def known_paths(self) -> set[str]:
        async with self._db.read() as session:
            return set(await session.scalars(select(SourceImage.path)))
