"""`fluxbot export`: one user's images and the parameters that made them, as a zip file."""

from __future__ import annotations

import asyncio
import json
import os
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from fluxbot.core.errors import UserError
from fluxbot.store import JobRow, SeedRecord, Store, User
from fluxbot.store.types import utcnow

MANIFEST_NAME = "fluxbot-export.json"
EXPORT_FORMAT = 1


class UnknownUser(UserError, LookupError):
    """The store has no user and no job with that id: nothing is written."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        super().__init__(
            f"user {user_id} is not in the database (no settings, no jobs): nothing was "
            "exported; check the id (Discord: turn on Developer Mode, right-click the user, "
            "Copy User ID)"
        )


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What went into the zip; `missing` lists image files that were not on disk."""

    path: Path
    jobs: int
    images: int
    missing: list[str] = field(default_factory=list)

    def summary(self, user_id: int) -> str:
        """One sentence for the operator."""
        line = (
            f"Wrote {self.path}: {self.images} image(s) from {self.jobs} job(s) of user {user_id}"
        )
        if self.missing:
            line += f"; {len(self.missing)} image file(s) were missing on disk (listed in the zip)"
        return line + "."


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _user_json(user: User | None, user_id: int) -> dict[str, Any]:
    if user is None:
        return {"id": str(user_id)}
    return {
        "id": str(user.id),
        "seed_profile": user.seed_profile,
        "last_seed": user.last_seed,
        "default_aspect": user.default_aspect,
        "default_steps": user.default_steps,
        "private_results": user.private_results,
        "created_at": _iso(user.created_at),
    }


def _job_json(job: JobRow, parent_public_id: str | None) -> dict[str, Any]:
    return {
        "id": job.public_id,
        "kind": job.kind.value,
        "status": job.status.value,
        "parent": parent_public_id,
        "prompt": job.prompt,
        "negative": job.negative,
        "seed": job.seed,
        "params": job.params,
        "operation": job.operation,
        "source_sha256": job.source_sha256,
        "private": job.private,
        "device": job.device,
        "timings": job.timings,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "images": [
            {
                "file": f"images/{PurePosixPath(image.path).name}",
                "index": image.index,
                "seed": image.seed,
                "sha256": image.sha256,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "bytes": image.size_bytes,
            }
            for image in job.images
        ],
    }


async def export_user(store: Store, user_id: int, out_path: Path | str) -> ExportReport:
    """Write every job of `user_id` (images plus a JSON of their parameters) to a zip file;
    `UnknownUser` when the store knows nothing of them.

    The zip is written under a temporary name and renamed, so `out_path` is either the
    complete export or untouched.
    """
    out_path = Path(out_path)
    user = await store.users.get(user_id)
    jobs = await store.jobs.all_for_user(user_id)
    if user is None and not jobs:
        raise UnknownUser(user_id)
    seeds = await store.users.recent_seeds(user_id, limit=1_000_000)
    sources = await store.sources.for_user(user_id)
    public_ids = {job.id: job.public_id for job in jobs}
    for job in jobs:
        if job.parent_id is not None and job.parent_id not in public_ids:
            parent = await store.jobs.get(job.parent_id)
            if parent is not None:
                public_ids[parent.id] = parent.public_id
    manifest = {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(utcnow()),
        "user": _user_json(user, user_id),
        "jobs": [_job_json(job, public_ids.get(job.parent_id or -1)) for job in jobs],
        "seeds": [_seed_json(record) for record in seeds],
        "sources": [
            {
                "file": f"sources/{PurePosixPath(source.path).name}",
                "sha256": source.sha256,
                "width": source.width,
                "height": source.height,
                "format": source.format,
                "bytes": source.size_bytes,
            }
            for source in sources
        ],
    }
    source_paths = [source.path for source in sources]
    return await asyncio.to_thread(_write_zip, store, jobs, manifest, out_path, source_paths)


def _seed_json(record: SeedRecord) -> dict[str, Any]:
    return {"seed": record.seed, "used_at": _iso(record.used_at), "job": record.job_public_id}


def _write_zip(
    store: Store,
    jobs: list[JobRow],
    manifest: dict[str, Any],
    out_path: Path,
    source_paths: list[str],
) -> ExportReport:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = out_path.with_name(f".{out_path.name}.tmp")
    missing: list[str] = []
    count = 0
    try:
        with zipfile.ZipFile(temp, "w") as archive:
            for job in jobs:
                for image in job.images:
                    source = store.image_path(image.path)
                    if not source.is_file():
                        missing.append(image.path)
                        continue
                    # Images are already compressed; storing them as-is is faster and no bigger.
                    archive.write(
                        source,
                        f"images/{PurePosixPath(image.path).name}",
                        compress_type=zipfile.ZIP_STORED,
                    )
                    count += 1
            for relative in source_paths:
                path = store.sources.files.absolute(relative)
                if not path.is_file():
                    missing.append(relative)
                    continue
                archive.write(
                    path,
                    f"sources/{PurePosixPath(relative).name}",
                    compress_type=zipfile.ZIP_STORED,
                )
            manifest["missing"] = missing
            archive.writestr(
                MANIFEST_NAME,
                json.dumps(manifest, indent=2, ensure_ascii=False),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, out_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return ExportReport(path=out_path, jobs=len(jobs), images=count, missing=missing)
