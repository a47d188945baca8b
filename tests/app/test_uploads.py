"""Uploaded images are checked by content before anything is queued: each bad case refused."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from fluxbot.app.uploads import MAX_UPLOAD_BYTES, check_declared_size, check_upload
from fluxbot.core.requests import RequestError


def _encoded(fmt: str, size: tuple[int, int] = (320, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's trick)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_png_jpeg_and_webp_are_accepted(fmt: str, name: str) -> None:
    upload = check_upload(_encoded(fmt))
    assert (upload.format, upload.width, upload.height) == (name, 320, 200)
    assert len(upload.sha256) == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "an empty file"),
        (b"GIF89a" + b"\x00" * 100, "a file of another type"),
        (b"%PDF-1.7 not an image", "a file of another type"),
        (_encoded("GIF"), "a file of another type"),
        (_encoded("BMP"), "a file of another type"),
    ],
)
def test_other_types_are_refused_by_content(data: bytes, message: str) -> None:
    with pytest.raises(
        RequestError, match=f"image '{message}' is not allowed: a PNG, JPEG or WebP"
    ):
        check_upload(data)


def test_a_png_named_anything_is_still_judged_by_content() -> None:
    jpeg = _encoded("JPEG")
    assert check_upload(jpeg).format == "jpeg"  # whatever the file was called


def test_damaged_files_are_refused() -> None:
    png = _encoded("PNG")
    with pytest.raises(RequestError, match=r"a damaged PNG file.* complete and readable"):
        check_upload(png[: len(png) // 2])
    jpeg = _encoded("JPEG")
    with pytest.raises(RequestError, match="damaged JPEG"):
        check_upload(jpeg[:200])


def test_too_large_dimensions_are_refused() -> None:
    with pytest.raises(RequestError, match=r"image '4097x64' .* 64 to 4096 pixels a side"):
        check_upload(_encoded("PNG", (4097, 64)))


def test_too_small_dimensions_are_refused() -> None:
    with pytest.raises(RequestError, match=r"image '32x300'"):
        check_upload(_encoded("PNG", (32, 300)))


def test_a_decompression_bomb_is_refused_without_decoding() -> None:
    bomb = _png_claiming(60_000, 60_000)
    assert len(bomb) < 200
    with pytest.raises(RequestError, match="4096 pixels a side"):
        check_upload(bomb)
    huge = _png_claiming(200_000, 200_000)  # past Pillow's own bomb limit too
    with pytest.raises(RequestError, match="4096 pixels a side"):
        check_upload(huge)


def test_too_many_bytes_are_refused_before_and_after_download() -> None:
    with pytest.raises(RequestError, match=r"image .30.0 MiB. .* at most 25 MiB"):
        check_declared_size(30 * 2**20)
    check_declared_size(MAX_UPLOAD_BYTES)
    with pytest.raises(RequestError, match="at most 25 MiB"):
        check_upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_UPLOAD_BYTES)
