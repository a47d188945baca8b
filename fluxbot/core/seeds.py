"""Seed manager: the seed range, per-user seed profiles and one generator per image.

A seed is a whole number from 0 to 2**32 - 1. A user's profile decides the seed of their next
job when they give none: `random` (the default), `fixed:N`, or `increment` (continue after the
seeds of their last job). A seed the user types always wins over the profile.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch

from fluxbot.core.requests import SEED_MAX, SEED_MIN, RequestError

SEED_SPACE = SEED_MAX + 1
SEED_ALLOWED = f"a whole number from {SEED_MIN} to {SEED_MAX}"
PROFILE_ALLOWED = f"'random', 'increment' or 'fixed:N' where N is {SEED_ALLOWED}"

_DIGITS = re.compile(r"[0-9]+")
_PROFILE = re.compile(r"^\s*([a-z]+)\s*(?:[:= ]\s*(\S+))?\s*$", re.IGNORECASE)


def parse_seed(value: str | int, field_name: str = "seed") -> int:
    """A seed from a slash option, a flag or the store; `RequestError` naming the range if not."""
    if isinstance(value, bool):
        raise RequestError(field_name, value, SEED_ALLOWED)
    if isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise RequestError(field_name, value, SEED_ALLOWED)
        seed = int(text)
    elif isinstance(value, int):
        seed = value
    else:
        raise RequestError(field_name, value, SEED_ALLOWED)
    if not SEED_MIN <= seed <= SEED_MAX:
        raise RequestError(field_name, value, SEED_ALLOWED)
    return seed


def advance_seed(seed: int, steps: int) -> int:
    """The seed `steps` after `seed`, wrapping at 2**32 (as a batch's image seeds do)."""
    return (seed + steps) % SEED_SPACE


def batch_seeds(first: int, count: int) -> list[int]:
    """The seed of each image of a batch: first, first + 1, ... (same rule as the request)."""
    first = parse_seed(first)
    return [advance_seed(first, i) for i in range(count)]


def random_seed(rng: random.Random | None = None) -> int:
    """A uniformly drawn seed; pass `rng` to make the draw reproducible (tests, replays)."""
    return (rng or random.Random()).randint(SEED_MIN, SEED_MAX)


class SeedMode(StrEnum):
    RANDOM = "random"
    FIXED = "fixed"
    INCREMENT = "increment"


@dataclass(frozen=True, slots=True)
class SeedProfile:
    """How a user's next seed is chosen; `str()` is the stored form and `parse` reads it back."""

    mode: SeedMode = SeedMode.RANDOM
    seed: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", SeedMode(self.mode))
        except ValueError:
            raise RequestError("seed profile", self.mode, PROFILE_ALLOWED) from None
        if self.mode is SeedMode.FIXED:
            if self.seed is None:
                raise RequestError("seed profile", str(self.mode), PROFILE_ALLOWED)
            parse_seed(self.seed, "seed profile")
        elif self.seed is not None:
            raise RequestError("seed profile", f"{self.mode}:{self.seed}", PROFILE_ALLOWED)

    @classmethod
    def fixed(cls, seed: int | str) -> SeedProfile:
        return cls(SeedMode.FIXED, parse_seed(seed, "seed profile"))

    @classmethod
    def parse(cls, text: str) -> SeedProfile:
        """Read `random`, `increment` or `fixed:N` (case and spacing forgiven)."""
        match = _PROFILE.match(text) if isinstance(text, str) else None
        if match is None:
            raise RequestError("seed profile", text, PROFILE_ALLOWED)
        name, argument = match.group(1).lower(), match.group(2)
        try:
            mode = SeedMode(name)
        except ValueError:
            raise RequestError("seed profile", text, PROFILE_ALLOWED) from None
        if mode is SeedMode.FIXED:
            if argument is None:
                raise RequestError("seed profile", text, PROFILE_ALLOWED)
            try:
                return cls.fixed(argument)
            except RequestError:
                raise RequestError("seed profile", text, PROFILE_ALLOWED) from None
        if argument is not None:
            raise RequestError("seed profile", text, PROFILE_ALLOWED)
        return cls(mode)

    def __str__(self) -> str:
        if self.mode is SeedMode.FIXED:
            return f"{self.mode}:{self.seed}"
        return str(self.mode)


def next_seed(
    profile: SeedProfile,
    last_seed: int | None,
    rng: random.Random | None = None,
    *,
    last_count: int = 1,
    explicit: int | str | None = None,
) -> int:
    """The first seed of a user's next job.

    `explicit` (a seed the user typed) always wins. `increment` continues after the last job's
    images (`last_seed + last_count`, wrapping); with no last job it starts at a random seed.
    """
    if explicit is not None:
        return parse_seed(explicit)
    if profile.mode is SeedMode.FIXED:
        assert profile.seed is not None  # guaranteed by SeedProfile
        return profile.seed
    if profile.mode is SeedMode.INCREMENT and last_seed is not None:
        if isinstance(last_count, bool) or not isinstance(last_count, int) or last_count < 1:
            raise ValueError(f"last_count must be a positive whole number, not {last_count!r}")
        return advance_seed(parse_seed(last_seed, "last seed"), last_count)
    return random_seed(rng)


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU `torch.Generator` per image, seeded with that image's seed.

    CPU generators give the same initial noise on every device (diffusers' advice), so a stored
    seed remakes the same image on any GPU of any host.
    """
    return [torch.Generator(device="cpu").manual_seed(parse_seed(seed)) for seed in seeds]
