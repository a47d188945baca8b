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

from .errors import entity_too_large, invalid_json

FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
CHUNK = 64 * 1024


@dataclass
class UploadedFile:
    filename: str
    data: bytes


@dataclass
class ParsedBody:
    payload: dict[str, Any]
    files: dict[int, UploadedFile] = field(default_factory=dict)


def loads(raw: bytes | str) -> Any:
    """JSON, or Discord's 50109 answer."""
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise invalid_json() from exc


async def parse_body(request: web.Request, *, file_size_limit: int) -> ParsedBody:
    """Parse a JSON or multipart body; raise 413/40005 if any file is over `file_size_limit`."""
    if not request.content_type.startswith("multipart/"):
        payload = loads(await request.read())
        if payload is not None and not isinstance(payload, dict):
            raise invalid_json()
        return ParsedBody(payload or {})
    parsed = ParsedBody({})
    oversized = False
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader), "discord.py does not nest multiparts"
        if part.name == "payload_json":
            parsed.payload = loads(await part.read(decode=True)) or {}
            continue
        match = FILE_FIELD.match(part.name or "")
        if match is None:
            await part.release()
            continue
        data = await _read_capped(part, file_size_limit)
        if data is None:
            oversized = True
            continue
        index = int(match.group(1))
        parsed.files[index] = UploadedFile(part.filename or f"file{index}", data)
    if oversized:
        raise entity_too_large()
    return parsed


async def _read_capped(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None when it exceeds `limit` (the rest is drained, not kept)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None
