"""Deleting jobs and users: rows first (committed), files after.

That order keeps the invariant that every row's file exists; a crash between the two leaves
only files without rows, which the start-up sweep removes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.store.db import Database
from fluxbot.store.files import ImageFiles
from fluxbot.store.models import (
    ACTIVE_STATUSES,
    Image,
    JobRow,
    SeedUse,
    SourceImage,
    Usage,
    User,
)

_CHUNK = 500  # stay far below SQLite's limit on bound parameters


@dataclass(frozen=True, slots=True)
class Removal:
    """What a deletion removed."""

    jobs: int = 0
    images: int = 0
    bytes_freed: int = 0
    # Jobs that were still queued or running: the caller should cancel them in the scheduler.
    active_job_ids: tuple[int, ...] = ()
    user_deleted: bool = False


async def delete_job_rows(session: AsyncSession, job_ids: Sequence[int]) -> tuple[list[str], int]:
    """Delete jobs (their images cascade); returns the image paths and their total size."""
    paths: list[str] = []
    size = 0
    for start in range(0, len(job_ids), _CHUNK):
        chunk = job_ids[start : start + _CHUNK]
        rows = await session.execute(
            select(Image.path, Image.size_bytes).where(Image.job_id.in_(chunk))
        )
        for path, size_bytes in rows:
            paths.append(path)
            size += size_bytes
        await session.execute(delete(JobRow).where(JobRow.id.in_(chunk)))
    return paths, size


async def remove_files(
    files: ImageFiles, paths: list[str], sources: ImageFiles | None, source_paths: list[str]
) -> None:
    """Remove deleted rows' files (after the rows' transaction committed), off the loop."""
    await asyncio.to_thread(files.remove, paths)
    if sources is not None:
        await asyncio.to_thread(sources.remove, source_paths)


SOURCE_GRACE = timedelta(hours=1)
"""A source image newer than this is never pruned: its job may be on its way to the store."""


async def delete_unused_sources(
    session: AsyncSession, job_ids: Sequence[int], *, now: datetime
) -> tuple[list[str], int]:
    """Before `job_ids` are deleted: delete the source images (uploads, parents' images) that
    only those jobs use, stored before `now - SOURCE_GRACE`; returns their paths and size."""
    used: set[tuple[int, str]] = set()
    for start in range(0, len(job_ids), _CHUNK):
        chunk = job_ids[start : start + _CHUNK]
        rows = await session.execute(
            select(JobRow.user_id, JobRow.source_sha256).where(
                JobRow.id.in_(chunk), JobRow.source_sha256.is_not(None)
            )
        )
        used.update((user_id, sha) for user_id, sha in rows if sha is not None)
    doomed = set(job_ids)
    paths: list[str] = []
    size = 0
    for user_id, sha in sorted(used):
        others = await session.scalars(
            select(JobRow.id).where(JobRow.user_id == user_id, JobRow.source_sha256 == sha)
        )
        if any(job_id not in doomed for job_id in others):
            continue
        source = await session.scalar(
            select(SourceImage).where(
                SourceImage.user_id == user_id,
                SourceImage.sha256 == sha,
                SourceImage.created_at < now - SOURCE_GRACE,
            )
        )
        if source is not None:
            paths.append(source.path)
            size += source.size_bytes
            await session.delete(source)
    return paths, size


async def delete_jobs(db: Database, files: ImageFiles, job_ids: Sequence[int]) -> Removal:
    """Delete the given jobs with their images, rows and files."""
    job_ids = list(job_ids)
    if not job_ids:
        return Removal()
    async with db.write() as session:
        active = await session.scalars(
            select(JobRow.id).where(JobRow.id.in_(job_ids), JobRow.status.in_(ACTIVE_STATUSES))
        )
        active_ids = tuple(active)
        paths, size = await delete_job_rows(session, job_ids)
    await asyncio.to_thread(files.remove, paths)
    return Removal(
        jobs=len(job_ids), images=len(paths), bytes_freed=size, active_job_ids=active_ids
    )


async def delete_user_data(
    db: Database, files: ImageFiles, user_id: int, sources: ImageFiles | None = None
) -> Removal:
    """Forget a user: their jobs, images (rows and files), source images (uploads and the
    images their jobs started from), seed history, usage and settings.

    Bans stay: forgetting oneself must not lift a ban."""
    async with db.write() as session:
        source_rows = await session.execute(
            select(SourceImage.path, SourceImage.size_bytes).where(SourceImage.user_id == user_id)
        )
        source_paths = []
        source_size = 0
        for path, size_bytes in source_rows:
            source_paths.append(path)
            source_size += size_bytes
        await session.execute(delete(SourceImage).where(SourceImage.user_id == user_id))
        jobs = list(
            await session.execute(select(JobRow.id, JobRow.status).where(JobRow.user_id == user_id))
        )
        job_ids = [job_id for job_id, _status in jobs]
        active_ids = tuple(job_id for job_id, status in jobs if status in ACTIVE_STATUSES)
        paths, size = await delete_job_rows(session, job_ids)
        await session.execute(delete(SeedUse).where(SeedUse.user_id == user_id))
        await session.execute(delete(Usage).where(Usage.user_id == user_id))
        deleted = cast(
            CursorResult[Any], await session.execute(delete(User).where(User.id == user_id))
        )
    await remove_files(files, paths, sources, source_paths)
    return Removal(
        jobs=len(job_ids),
        images=len(paths) + len(source_paths),
        bytes_freed=size + source_size,
        active_job_ids=active_ids,
        user_deleted=deleted.rowcount > 0,
    )
