"""ImageFiles: atomic writes, path safety and the orphan sweep."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fluxbot.store import EncodedImage, ImageFiles

from .helpers import encoded


def test_write_is_complete_and_leaves_no_temp_file(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    image = encoded(1)
    relative = files.relative_path("abcd2345", 0, image, datetime(2025, 2, 3, tzinfo=UTC))
    assert relative.startswith("images/2025/02/abcd2345-0-") and relative.endswith(".png")
    files.write(relative, image.data)
    assert (tmp_path / relative).read_bytes() == image.data
    assert files.list_files() == [relative]


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = ImageFiles(tmp_path)

    def broken_fsync(_fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("fluxbot.store.files.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        files.write("images/x/a.png", b"data")
    assert files.list_files() == []


def test_paths_outside_the_images_dir_are_refused(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    for bad in ("../escape.png", "images/../../escape.png", "fluxbot.db", "/etc/passwd"):
        with pytest.raises(ValueError, match="outside"):
            files.absolute(bad)


def test_sweep_removes_orphans_and_temp_files_only(tmp_path: Path) -> None:
    files = ImageFiles(tmp_path)
    files.write("images/2025/01/kept-0.png", b"kept")
    files.write("images/2025/01/orphan-0.png", b"orphan")
    files.write("images/2024/12/old-orphan.png", b"old")
    temp = tmp_path / "images/2025/01/.half-0.png.1a2b3c4d.tmp"
    temp.write_bytes(b"half")
    (tmp_path / "fluxbot.db").write_bytes(b"not an image")  # outside images/: never touched
    removed = files.sweep({"images/2025/01/kept-0.png"})
    assert removed == [
        "images/2024/12/old-orphan.png",
        "images/2025/01/.half-0.png.1a2b3c4d.tmp",
        "images/2025/01/orphan-0.png",
    ]
    assert files.list_files() == ["images/2025/01/kept-0.png"]
    assert not (tmp_path / "images/2024").exists()  # emptied month directories go too
    assert (tmp_path / "fluxbot.db").exists()


def test_sweep_on_a_fresh_data_dir_is_a_no_op(tmp_path: Path) -> None:
    assert ImageFiles(tmp_path / "new").sweep(set()) == []


def test_encoded_image_checks_its_format() -> None:
    with pytest.raises(ValueError, match="format"):
        EncodedImage(data=b"x", seed=1, width=1, height=1, format="bmp")
    with pytest.raises(ValueError, match="no bytes"):
        EncodedImage(data=b"", seed=1, width=1, height=1)
