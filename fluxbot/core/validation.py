"""What every request and image operation is checked against: `RequestError`, the refusal a
user is shown, and the 16-pixel grid sizes must sit on (FLUX: 8 px per latent, 2x2 latents per
token). Its own module so `fluxbot.core.requests` and `fluxbot.core.edits` both build on it
without importing each other."""

from __future__ import annotations

from typing import Any

from fluxbot.core.errors import UserError

SIZE_MULTIPLE = 16


class RequestError(UserError, ValueError):
    """Input that cannot be generated; `str()` is a sentence fit to show a user."""

    def __init__(self, field_name: str, value: Any, allowed: str) -> None:
        self.field_name = field_name
        self.value = value
        self.allowed = allowed
        shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else "(too long)"
        super().__init__(f"{field_name} {shown} is not allowed: {allowed}")
