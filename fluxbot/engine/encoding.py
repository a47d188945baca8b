"""Image encoding: PNGs that carry their parameters, and re-encoding to fit an upload limit.

Runs off the GPU thread. PNGs are written by `fpng` (a fast PNG writer, ~4-12 ms for 1024x1024
against Pillow's 90-230 ms at any compression level), with the parameters added as
tEXt/iTXt chunks after the header, since fpng writes none; Pillow is the fallback.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin

from fluxbot import __version__
from fluxbot.core.requests import GenerationResult
from fluxbot.engine.verdict import SafetyVerdict

PARAMETERS_KEY = "parameters"
FLUXBOT_KEY = "fluxbot"
JPEG_QUALITIES = (95, 90, 85, 80, 70, 60)
MIN_UPLOAD_SIDE = 64


FORMATS = ("png", "webp", "jpeg", "gif")
# File name extension -> the still-image format written for it (`fluxbot generate --out`).
EXTENSION_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_USER_COMMENT = 0x9286  # EXIF UserComment: 8 bytes naming the charset, then the text
_IMAGE_DESCRIPTION = 0x010E
_ASCII_PREFIX = b"ASCII\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """Bytes ready to store and upload, with what a user or the store needs to know."""

    data: bytes
    seed: int
    width: int
    height: int
    format: str = "png"
    note: str | None = None
    # The image-safety classifier's verdict, when it ran (see fluxbot.engine.safety).
    safety: SafetyVerdict | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r}: one of {', '.join(FORMATS)}")
        if not self.data:
            raise ValueError("an image with no bytes")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


def describe_parameters(params: dict[str, Any]) -> str:
    """The human-readable line other tools (A1111, ComfyUI viewers) show for a PNG."""
    parts = [str(params.get("prompt", ""))]
    if params.get("negative"):
        parts.append(f"Negative prompt: {params['negative']}")
    edit = params.get("edit")
    if edit:
        parent = f" of {edit['parent']}" if edit.get("parent") else ""
        source = (
            f" (source sha256 {edit['source_sha256'][:12]})" if edit.get("source_sha256") else ""
        )
        parts.append(f"Operation: {edit['operation']}{parent}{source}")
    size = f"{params.get('width')}x{params.get('height')}"
    parts.append(
        f"Steps: {params.get('steps')}, Seed: {params.get('seed')}, Size: {size}, "
        f"Model: {params.get('model', '')}, fluxbot: {__version__}"
    )
    return "\n".join(parts)


def encode_png(image: Image.Image, params: dict[str, Any], seed: int) -> EncodedImage:
    """PNG with the image's own generation parameters in text chunks."""
    own = dict(params, seed=seed, count=1, fluxbot_version=__version__)
    texts = {PARAMETERS_KEY: describe_parameters(own), FLUXBOT_KEY: json.dumps(own, sort_keys=True)}
    data = fast_png(image)
    if data is None:
        info = PngImagePlugin.PngInfo()
        for key, text in texts.items():
            info.add_text(key, text)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
        data = buffer.getvalue()
    else:
        data = with_text_chunks(data, texts)
    return EncodedImage(data, seed, image.width, image.height, "png")


def fast_png(image: Image.Image) -> bytes | None:
    """The image as a PNG by fpng (no text chunks), or None when fpng cannot write it here."""
    if image.mode not in ("RGB", "RGBA"):
        return None
    try:
        from fpng import fpng_ext
    except ImportError:
        return None
    return fpng_ext.encode_ndarray(np.ascontiguousarray(np.asarray(image)))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_SIGNATURE) + 8 + 13 + 4  # signature, IHDR length+type, data, CRC


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def text_chunk(key: str, text: str) -> bytes:
    """A tEXt chunk when the text is Latin-1 (as PNG defines it), else an uncompressed iTXt."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        body = key.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8")
        return _chunk(b"iTXt", body)


def with_text_chunks(png: bytes, texts: dict[str, str]) -> bytes:
    """`png` with text chunks right after its header (before the image data, where every
    reader looks for them)."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG that starts with its IHDR chunk")
    chunks = b"".join(text_chunk(key, text) for key, text in texts.items())
    return png[:_IHDR_END] + chunks + png[_IHDR_END:]


def encode_image(
    image: Image.Image, params: dict[str, Any], seed: int, fmt: str = "png"
) -> EncodedImage:
    """PNG, JPEG (quality 95) or lossless WebP, each carrying the image's parameters: PNG in
    text chunks, JPEG and WebP in EXIF (ImageDescription, and the JSON in UserComment)."""
    if fmt == "png":
        return encode_png(image, params, seed)
    if fmt not in ("jpeg", "webp"):
        raise ValueError(f"format {fmt!r}: one of png, jpeg, webp")
    own = dict(params, seed=seed, count=1, fluxbot_version=__version__)
    exif = Image.Exif()
    exif[_IMAGE_DESCRIPTION] = describe_parameters(own).encode("ascii", "replace").decode()
    comment = json.dumps(own, sort_keys=True, ensure_ascii=True).encode("ascii")
    exif.get_ifd(ExifTags.IFD.Exif)[_USER_COMMENT] = _ASCII_PREFIX + comment
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=95, subsampling=0, exif=exif)
    else:
        image.save(buffer, format="WEBP", lossless=True, method=4, exif=exif)
    return EncodedImage(buffer.getvalue(), seed, image.width, image.height, fmt)


def read_parameters(data: bytes) -> dict[str, Any]:
    """The parameters a fluxbot PNG, JPEG or WebP carries (empty if none)."""
    with Image.open(io.BytesIO(data)) as image:
        text = getattr(image, "text", {}) or {}
        comment = image.getexif().get_ifd(ExifTags.IFD.Exif).get(_USER_COMMENT)
    raw = text.get(FLUXBOT_KEY)
    if raw:
        return json.loads(raw)
    if isinstance(comment, bytes) and comment.startswith(_ASCII_PREFIX):
        return json.loads(comment[len(_ASCII_PREFIX) :])
    return {}


def fit_upload(encoded: EncodedImage, limit: int) -> EncodedImage:
    """Re-encode an image over `limit` bytes: lossless WebP, JPEG at falling quality, then
    smaller JPEGs. The stored PNG is untouched; the note says what the upload lost.

    Raises ValueError only when not even a 64-pixel JPEG fits (a nonsensical limit).
    """
    if len(encoded.data) <= limit:
        return encoded
    with Image.open(io.BytesIO(encoded.data)) as source:
        image = source.convert("RGB")
    buffer = io.BytesIO()
    # method 0: the result waits for this. A 2048x2048 upscale (8.6 MiB as PNG) took 2.2 s
    # on a 2-core CI machine against 11.8 s with method 4, for a 9 % larger file.
    image.save(buffer, format="WEBP", lossless=True, method=0)
    if buffer.tell() <= limit:
        return _reencoded(encoded, buffer.getvalue(), "webp", "re-encoded as lossless WebP")
    for quality in JPEG_QUALITIES:
        data = _jpeg(image, quality)
        if len(data) <= limit:
            note = f"re-encoded as JPEG (quality {quality}) to fit the upload limit"
            return _reencoded(encoded, data, "jpeg", note)
    scale = 0.75
    while min(image.width, image.height) * scale >= MIN_UPLOAD_SIDE:
        size = (round(image.width * scale), round(image.height * scale))
        data = _jpeg(image.resize(size, Image.Resampling.LANCZOS), JPEG_QUALITIES[2])
        if len(data) <= limit:
            note = f"scaled to {size[0]}x{size[1]} JPEG to fit the upload limit"
            return _reencoded(encoded, data, "jpeg", note)
        scale *= 0.75
    raise ValueError(f"the image does not fit in {limit} bytes even as a small JPEG")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def _reencoded(original: EncodedImage, data: bytes, fmt: str, note: str) -> EncodedImage:
    return EncodedImage(data, original.seed, original.width, original.height, fmt, note)


DEFAULT_UPLOAD_LIMIT = 10 * 2**20
"""Discord's per-file limit for bots unless the interaction says otherwise."""


def encode_result(
    result: GenerationResult, model: str, gif_budget: int = DEFAULT_UPLOAD_LIMIT
) -> list[EncodedImage]:
    """What a finished job stores: one PNG per image, or one GIF for an animation."""
    request = result.request
    params = dict(request.to_params(), model=model)
    if request.animation is not None:
        from fluxbot.engine.animation import encode_gif

        gif = encode_gif(result.images, gif_budget, fps=request.animation.fps)
        note = f"GIF: {', '.join(gif.notes)}" if gif.notes else None
        return [EncodedImage(gif.data, request.seed, gif.width, gif.height, "gif", note)]
    return [
        encode_png(image, params, seed)
        for image, seed in zip(result.images, result.seeds, strict=True)
    ]
