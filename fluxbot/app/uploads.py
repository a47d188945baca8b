"""Checking an uploaded image before anything is queued: type by content, size, dimensions.

The header is read first and its dimensions checked before any pixel is decoded, so a small
file that claims a huge image (a decompression bomb) is refused without decoding it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

from fluxbot.core.requests import RequestError

MAX_UPLOAD_BYTES = 25 * 2**20
MAX_UPLOAD_SIDE = 4096
MIN_UPLOAD_SIDE = 64
ALLOWED_TYPES = "a PNG, JPEG or WebP image"


@dataclass(frozen=True, slots=True)
class Upload:
    """An accepted image: its bytes, detected format ('png', 'jpeg', 'webp') and size."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff_format(data: bytes) -> str | None:
    """The image type from its first bytes (never from a file name or a declared type)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_declared_size(size: int, field_name: str = "image") -> None:
    """Refuse an attachment by its declared size before downloading it."""
    if size > MAX_UPLOAD_BYTES:
        raise RequestError(
            field_name, f"{size / 2**20:.1f} MiB", f"{ALLOWED_TYPES} of at most 25 MiB"
        )


def check_upload(data: bytes, field_name: str = "image") -> Upload:
    """Accept `data` as an image prompt or raise RequestError naming `field_name`."""
    check_declared_size(len(data), field_name)
    if not data:
        raise RequestError(field_name, "an empty file", ALLOWED_TYPES)
    fmt = sniff_format(data)
    if fmt is None:
        raise RequestError(field_name, "a file of another type", ALLOWED_TYPES)
    limit = f"{ALLOWED_TYPES} from {MIN_UPLOAD_SIDE} to {MAX_UPLOAD_SIDE} pixels a side"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if not (
                    MIN_UPLOAD_SIDE <= width <= MAX_UPLOAD_SIDE
                    and MIN_UPLOAD_SIDE <= height <= MAX_UPLOAD_SIDE
                ):
                    raise RequestError(field_name, f"{width}x{height}", limit)
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(field_name, "an oversized image", limit) from None
    except RequestError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(
            field_name, f"a damaged {fmt.upper()} file", f"{ALLOWED_TYPES}, complete and readable"
        ) from exc
    return Upload(data=data, format=fmt, width=width, height=height)
