"""Saving a job's images: durable files first, then the rows, so no row points at a missing file.

A crash after the files are in place but before the commit leaves files without rows, which
the start-up sweep removes; the reverse (a row without its file) cannot happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from fluxbot.core.requests import JobStatus
from fluxbot.store.db import Database
from fluxbot.store.errors import JobNotFound
from fluxbot.store.files import EncodedImage, ImageFiles
from fluxbot.store.jobs import finish
from fluxbot.store.models import Image, JobRow
from fluxbot.store.types import utcnow


async def _replace_rows(session: AsyncSession, job_id: int, rows: list[Image]) -> list[str]:
    """Swap a job's image rows for `rows`; returns the paths the old rows pointed at."""
    old = list(await session.scalars(select(Image.path).where(Image.job_id == job_id)))
    await session.execute(delete(Image).where(Image.job_id == job_id))
    session.add_all(rows)
    await session.flush()
    return old


async def save_images(
    db: Database,
    files: ImageFiles,
    job: JobRow,
    images: Sequence[EncodedImage],
    *,
    finish_with: JobStatus | None = None,
    timings: Mapping[str, float] | None = None,
    now: datetime | None = None,
) -> JobRow:
    """Write `images` as the job's images (replacing any earlier attempt's), then commit rows.

    With `finish_with=JobStatus.DONE` the job is marked done in the same transaction. If the
    job is no longer active by then (the user cancelled), the images are discarded and the
    job is returned as it is. Returns the job with its images loaded.
    """
    now = now or utcnow()
    planned = [
        (files.relative_path(job.public_id, index, image, job.created_at), index, image)
        for index, image in enumerate(images)
    ]
    async with db.read() as session:
        before = set(await session.scalars(select(Image.path).where(Image.job_id == job.id)))
    new_paths = [path for path, _index, _image in planned]
    # Files that only this call brought into being; safe to delete if the commit never happens.
    fresh = [path for path in new_paths if path not in before]

    def write_all() -> None:
        for path, _index, image in planned:
            files.write(path, image.data)

    try:
        await asyncio.to_thread(write_all)
        rows = [
            Image(
                job_id=job.id,
                index=index,
                seed=image.seed,
                path=path,
                sha256=image.sha256,
                width=image.width,
                height=image.height,
                format=image.format,
                size_bytes=len(image.data),
                created_at=now,
                safety_verdict=image.safety.label if image.safety else None,
                safety_scores=dict(image.safety.scores) if image.safety else None,
            )
            for path, index, image in planned
        ]
        async with db.write() as session:
            current = await session.get(JobRow, job.id, populate_existing=True)
            if current is None:
                raise JobNotFound(job.id)
            if finish_with is not None and not current.active:
                discarded, old_paths = True, []
            else:
                discarded = False
                old_paths = await _replace_rows(session, job.id, rows)
                if finish_with is not None:
                    await finish(session, job.id, finish_with, timings=timings, now=now)
                await session.refresh(current, ["images"])
    except BaseException:
        await asyncio.shield(asyncio.to_thread(files.remove, fresh))
        raise
    unused = fresh if discarded else [path for path in old_paths if path not in new_paths]
    if unused:
        await asyncio.to_thread(files.remove, unused)
    return current
