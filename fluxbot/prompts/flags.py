"""Inline flags people type from habit (Midjourney style): `--no`, `--seed`, `--ar`, ...

`parse_prompt` splits a raw prompt into its text and flag values; `merge_options` lays the
slash-command options over them (an option the user set wins over the same flag). Both check
values with the same functions, so `--seed abc` and `seed:abc` fail with the same sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fluxbot.core.requests import ASPECT_RATIOS, MAX_COUNT, MAX_PROMPT_CHARS, RequestError
from fluxbot.core.seeds import parse_seed
from fluxbot.prompts.text import normalise_text

# Flag name -> ParsedPrompt field. `--ar` and `--aspect` are the same flag.
FLAG_FIELDS: dict[str, str] = {
    "no": "negative",
    "seed": "seed",
    "ar": "aspect",
    "aspect": "aspect",
    "steps": "steps",
    "count": "count",
}
KNOWN_FLAGS = ", ".join(f"--{name}" for name in FLAG_FIELDS)
MIN_STEPS = 1
MAX_STEPS = 50

_FLAG = re.compile(r"(?<!\S)--([A-Za-z][\w-]*)(?:=(\S*))?")
_RATIO = re.compile(r"(\d{1,4})\s*[:x×/]\s*(\d{1,4})", re.IGNORECASE)
_EDGE_SEPARATORS = " ,;"


@dataclass(frozen=True, slots=True)
class ParsedPrompt:
    """A prompt's text (weights still in it) and its flag values; None where no flag was given."""

    text: str
    negative: str | None = None
    seed: int | None = None
    aspect: str | None = None
    steps: int | None = None
    count: int | None = None


def parse_aspect(value: str, field_name: str = "aspect") -> str:
    """An aspect preset name (`16:9`); `16x9`, `16/9` and unreduced `32:18` are read as `16:9`."""
    allowed = f"one of {', '.join(ASPECT_RATIOS)}"
    match = _RATIO.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise RequestError(field_name, value, allowed)
    name = _PRESET_BY_RATIO.get(_reduced(int(match.group(1)), int(match.group(2))))
    if name is None:
        raise RequestError(field_name, value, allowed)
    return name


def _reduced(width: int, height: int) -> tuple[int, int]:
    divisor = math.gcd(width, height) or 1
    return width // divisor, height // divisor


# Keyed by the reduced ratio: the "21:9" preset is 7:3 reduced, and "21:9" must find it.
_PRESET_BY_RATIO = {_reduced(w, h): name for name, (w, h) in ASPECT_RATIOS.items()}


def parse_steps(value: str | int, field_name: str = "steps") -> int:
    """Denoising steps, 1 to 50 (the operator's lower cap is checked on the request)."""
    return _whole_number(value, field_name, MIN_STEPS, MAX_STEPS)


def parse_count(value: str | int, field_name: str = "count") -> int:
    """Images in one job, 1 to `MAX_COUNT`."""
    return _whole_number(value, field_name, 1, MAX_COUNT)


def _whole_number(value: str | int, field_name: str, low: int, high: int) -> int:
    allowed = f"a whole number from {low} to {high}"
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise RequestError(field_name, value, allowed)
    if not low <= number <= high:
        raise RequestError(field_name, value, allowed)
    return number


_VALUE_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "seed": parse_seed,
    "aspect": parse_aspect,
    "steps": parse_steps,
    "count": parse_count,
}


def parse_prompt(raw: str) -> ParsedPrompt:
    """Normalise `raw` and take its inline flags out; `RequestError` for unknown or bad flags.

    `--no` takes everything up to the next flag (repeated `--no`s are joined); other flags take
    one word, and words after that word go back into the prompt text.
    """
    if len(raw) > MAX_PROMPT_CHARS:
        raise RequestError("prompt", raw, f"at most {MAX_PROMPT_CHARS} characters")
    text = normalise_text(raw, FLAG_FIELDS)
    matches = list(_FLAG.finditer(text))
    prompt_parts = [text[: matches[0].start()] if matches else text]
    negatives: list[str] = []
    values: dict[str, Any] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match.group(1).lower()
        body = (match.group(2) or "") + text[match.end() : end]
        field_name = FLAG_FIELDS.get(name)
        if field_name is None:
            raise RequestError("flag", f"--{name}", f"the known flags are {KNOWN_FLAGS}")
        if field_name == "negative":
            negatives.append(_strip_edges(body))
            if not negatives[-1]:
                raise RequestError(f"--{name}", "", "followed by what to keep out of the image")
            continue
        word, _, rest = body.strip().partition(" ")
        prompt_parts.append(rest)
        if field_name in values:
            raise RequestError(f"--{name}", _strip_edges(word), "given once per prompt")
        values[field_name] = _VALUE_PARSERS[field_name](_strip_edges(word), f"--{name}")
    prompt = _strip_edges(" ".join(part.strip() for part in prompt_parts if part.strip()))
    if not prompt:
        raise RequestError("prompt", raw, "some text besides the flags")
    negative = ", ".join(negatives) if negatives else None
    return ParsedPrompt(text=prompt, negative=negative, **values)


def merge_options(
    parsed: ParsedPrompt,
    *,
    negative: str | None = None,
    seed: int | str | None = None,
    aspect: str | None = None,
    steps: int | str | None = None,
    count: int | str | None = None,
) -> ParsedPrompt:
    """Lay slash-command options over the inline flags: an option that is not None wins."""
    changes: dict[str, Any] = {}
    if negative is not None:
        changes["negative"] = _strip_edges(normalise_text(negative))
    for field_name, value in (
        ("seed", seed),
        ("aspect", aspect),
        ("steps", steps),
        ("count", count),
    ):
        if value is not None:
            changes[field_name] = _VALUE_PARSERS[field_name](value, field_name)
    return replace(parsed, **changes)


def _strip_edges(text: str) -> str:
    return " ".join(text.split()).strip(_EDGE_SEPARATORS)
