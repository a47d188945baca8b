"""Request bodies as discord.py sends them: JSON, or multipart with `payload_json` + `files[n]`.

Every file part is read to the end even when it is over the limit, so the client gets the 413 JSON
answer rather than a connection reset halfway through its upload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import DiscordError, entity_too_large

FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
CHUNK = 64 * 1024


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes
    declared_content_type: str | None


@dataclass
class ParsedBody:
    payload: dict[str, Any]
    files: dict[int, UploadedFile] = field(default_factory=dict)
    multipart: bool = False
    oversized: list[str] = field(default_factory=list)


def invalid_json() -> DiscordError:
    return DiscordError(400, 50109, "The request body contains invalid JSON.")


def _loads(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise invalid_json() from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_json()
    return value


async def parse_body(request: web.Request, *, file_size_limit: int) -> ParsedBody:
    """Parse a JSON or multipart body; raise 413/40005 if any file is over `file_size_limit`."""
    if request.content_type.startswith("multipart/"):
        parsed = await _parse_multipart(request, file_size_limit)
        if parsed.oversized:
            raise entity_too_large()
        return parsed
    raw = await request.read()
    if not raw.strip():
        return ParsedBody(payload={})
    return ParsedBody(payload=_loads(raw))


async def _parse_multipart(request: web.Request, limit: int) -> ParsedBody:
    reader = await request.multipart()
    parsed = ParsedBody(payload={}, multipart=True)
    next_index = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            await part.release()
            continue
        name = part.name or ""
        if name == "payload_json":
            parsed.payload = _loads(await part.read(decode=True))
            continue
        match = FILE_FIELD.match(name)
        if match is None and not part.filename:
            await part.release()
            continue
        index = int(match.group(1)) if match else next_index
        next_index = max(next_index, index + 1)
        data = await _read_capped(part, limit)
        filename = part.filename or f"file{index}"
        if data is None:
            parsed.oversized.append(filename)
            continue
        declared = part.headers.get("Content-Type")
        parsed.files[index] = UploadedFile(index, filename, data, declared)
    return parsed


async def _read_capped(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None when it exceeds `limit` (the rest is drained, not kept)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > limit:
        return None
    return b"".join(chunks)
