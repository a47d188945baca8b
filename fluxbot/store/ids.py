"""Short public job ids: 8 characters of Crockford base32, easy to read out and type in `/show`."""

from __future__ import annotations

import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
PUBLIC_ID_LENGTH = 8
# Crockford's reading rules: letters people confuse with digits mean those digits.
_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0"})


def new_public_id() -> str:
    """A random id with 40 bits of entropy (callers still check it is unused)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def normalize_public_id(text: str) -> str | None:
    """The canonical form of a typed id (case, dashes, i/l/o forgiven), or None if invalid."""
    cleaned = text.strip().lower().replace("-", "").translate(_CONFUSABLE)
    if len(cleaned) != PUBLIC_ID_LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned
