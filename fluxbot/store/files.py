"""Image files under the data dir, written so a crash never leaves a half file behind a row.

A file is written under a temporary name in its final directory, fsync'd, renamed into place
and the directory fsync'd; only then may a row point at it. Files without a row (a crash
after the rename, before the commit) and temporary files are swept at start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath

from fluxbot.engine.encoding import FORMATS, EncodedImage

__all__ = ["FORMATS", "EncodedImage", "ImageFiles"]

IMAGES_SUBDIR = "images"
SOURCES_SUBDIR = "sources"  # images jobs start from (uploads, parents' images), by hash
TEMP_SUFFIX = ".tmp"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ImageFiles:
    """Owns `<data_dir>/images` (or another subdirectory): naming, atomic writes, removal and
    the orphan sweep.

    Paths given out and taken in are relative to the data dir, with '/' separators, which is
    what image rows store.
    """

    def __init__(self, data_dir: Path, subdir: str = IMAGES_SUBDIR) -> None:
        self.data_dir = Path(data_dir)
        self.subdir = subdir
        self.root = self.data_dir / subdir

    def relative_path(
        self, public_id: str, index: int, image: EncodedImage, created: datetime
    ) -> str:
        """Where image `index` of a job lives; the hash keeps a re-run from overwriting a file."""
        name = f"{public_id}-{index}-{image.sha256[:12]}.{image.format}"
        return str(PurePosixPath(IMAGES_SUBDIR, created.strftime("%Y/%m"), name))

    def absolute(self, relative: str) -> Path:
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{relative!r} is outside the {self.subdir} directory")
        return path

    def write(self, relative: str, data: bytes) -> Path:
        """Write `data` durably at `relative` (blocking: run it in a thread)."""
        final = self.absolute(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return final

    def source_path(self, user_id: int, sha256: str, extension: str) -> str:
        """Where a user's source image lives: content-addressed within the user's folder, so
        the same upload is kept once and forgetting a user removes one folder's files."""
        return str(PurePosixPath(self.subdir, str(user_id), f"{sha256}.{extension}"))

    def read(self, relative: str) -> bytes:
        return self.absolute(relative).read_bytes()

    def remove(self, relatives: Iterable[str]) -> int:
        """Delete files (missing ones are fine); returns how many were removed."""
        removed = 0
        for relative in relatives:
            try:
                self.absolute(relative).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def exists(self, relative: str) -> bool:
        return self.absolute(relative).is_file()

    def list_files(self) -> list[str]:
        """Every file under the images directory, as sorted data-dir-relative paths."""
        if not self.root.is_dir():
            return []
        found: list[str] = []
        for directory, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(directory, name)
                found.append(path.relative_to(self.data_dir).as_posix())
        return sorted(found)

    def sweep(self, known: set[str]) -> list[str]:
        """Delete temporary files and files no row knows; returns the removed paths.

        Run it only while nothing is saving images (at start): a file renamed into place a
        moment ago has no row yet either.
        """
        orphans = [path for path in self.list_files() if path not in known]
        self.remove(orphans)
        self._remove_empty_dirs()
        return orphans

    def _remove_empty_dirs(self) -> None:
        if not self.root.is_dir():
            return
        for directory, _dirs, _files in os.walk(self.root, topdown=False):
            if Path(directory) != self.root:
                with contextlib.suppress(OSError):  # fails, as wanted, unless it is empty
                    os.rmdir(directory)
