"""Store: the one object the bot holds for persistence (database, repositories, image files)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from fluxbot.config import RecoverPolicy
from fluxbot.core.requests import JobStatus
from fluxbot.store.bans import BanRepo
from fluxbot.store.db import Database, is_memory
from fluxbot.store.files import SOURCES_SUBDIR, EncodedImage, ImageFiles
from fluxbot.store.guilds import GuildSettingsRepo
from fluxbot.store.images import ImageRepo
from fluxbot.store.jobs import JobRepo
from fluxbot.store.migrate import upgrade_database
from fluxbot.store.models import JobRow
from fluxbot.store.recovery import DEFAULT_MAX_ATTEMPTS, Recovery, recover_interrupted
from fluxbot.store.removal import Removal, delete_jobs, delete_user_data
from fluxbot.store.results import save_images
from fluxbot.store.retention import RetentionPolicy, prune
from fluxbot.store.sources import SourceRepo
from fluxbot.store.usage import UsageRepo
from fluxbot.store.users import UserRepo


@dataclass(frozen=True, slots=True)
class Startup:
    """What `Store.startup` found: jobs to re-enqueue or notify, and files it removed."""

    recovery: Recovery
    orphans_removed: list[str]


class Store:
    """The database and image files behind fluxbot; create with `await Store.open(...)`.

    `users`, `jobs`, `images`, `guilds` (per-server policy), `bans` and `usage` are the
    repositories for queries; the methods here are the
    operations that touch both rows and files, which must happen in a careful order.
    """

    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = Path(data_dir)
        self.files = ImageFiles(self.data_dir)
        self.users = UserRepo(db)
        self.jobs = JobRepo(db)
        self.images = ImageRepo(db)
        self.sources = SourceRepo(db, ImageFiles(self.data_dir, SOURCES_SUBDIR))
        self.guilds = GuildSettingsRepo(db)
        self.bans = BanRepo(db)
        self.usage = UsageRepo(db)

    @classmethod
    async def open(
        cls,
        settings_or_url: Any,
        data_dir: Path | str | None = None,
        *,
        migrate: bool = True,
    ) -> Store:
        """Open the store from `Settings`, or from a database URL plus a data dir.

        With `migrate` (the default) the schema is upgraded to the newest revision first.
        """
        if isinstance(settings_or_url, str | URL):
            if data_dir is None:
                raise TypeError("Store.open(url, data_dir): a URL needs a data dir for images")
            url: str | URL = settings_or_url
        else:
            url = settings_or_url.db_url
            data_dir = settings_or_url.data_dir if data_dir is None else data_dir
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.connect(url)
        if migrate:
            try:
                await upgrade_database(url, engine=db.engine if is_memory(url) else None)
            except BaseException:
                await db.dispose()
                raise
        return cls(db, data_dir)

    async def close(self) -> None:
        await self.db.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def startup(
        self, policy: RecoverPolicy, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> Startup:
        """Recover what a crash left active and remove orphan files; call before workers start."""
        recovery = await recover_interrupted(self.db, policy, max_attempts=max_attempts)
        orphans = await self.sweep_orphans()
        return Startup(recovery=recovery, orphans_removed=orphans)

    async def recover_interrupted(
        self, policy: RecoverPolicy, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> Recovery:
        """Requeue or fail the jobs the last process left queued or running."""
        return await recover_interrupted(self.db, policy, max_attempts=max_attempts)

    async def sweep_orphans(self) -> list[str]:
        """Delete image files no row points at, and temp files; only while nothing is saving."""
        known = await self.images.known_paths()
        orphans = await asyncio.to_thread(self.files.sweep, known)
        known_sources = await self.sources.known_paths()
        orphans += await asyncio.to_thread(self.sources.files.sweep, known_sources)
        return orphans

    async def save_images(self, job: JobRow, images: Sequence[EncodedImage]) -> JobRow:
        """Store `images` as the job's images (files durable first, then rows)."""
        return await save_images(self.db, self.files, job, images)

    async def finish_job(
        self,
        job: JobRow,
        images: Sequence[EncodedImage],
        *,
        timings: Mapping[str, float] | None = None,
        now: datetime | None = None,
    ) -> JobRow:
        """Save the images and mark the job done in one transaction.

        A job cancelled meanwhile stays cancelled and its images are discarded; check the
        returned job's status before posting.
        """
        return await save_images(
            self.db,
            self.files,
            job,
            images,
            finish_with=JobStatus.DONE,
            timings=timings,
            now=now,
        )

    async def read_images(self, job: JobRow) -> list[EncodedImage]:
        """A job's stored images in batch order, read off the event loop."""

        def read() -> list[EncodedImage]:
            return [
                EncodedImage(
                    self.files.absolute(image.path).read_bytes(),
                    image.seed,
                    image.width,
                    image.height,
                    image.format,
                )
                for image in sorted(job.images, key=lambda i: i.index)
            ]

        return await asyncio.to_thread(read)

    def image_path(self, relative: str) -> Path:
        """The absolute path of an image row's file."""
        return self.files.absolute(relative)

    async def prune(self, policy: RetentionPolicy, *, now: datetime | None = None) -> Removal:
        """Apply retention: delete old or excess finished jobs with their files, and the
        source images no remaining job uses."""
        return await prune(self.db, self.files, policy, sources=self.sources.files, now=now)

    async def delete_jobs(self, job_ids: Sequence[int]) -> Removal:
        return await delete_jobs(self.db, self.files, job_ids)

    async def delete_user(self, user_id: int) -> Removal:
        """Forget everything about a user (rows and files); cancel `active_job_ids` after."""
        removal = await delete_user_data(self.db, self.files, user_id, self.sources.files)
        self.users.forget_cached(user_id)
        return removal
