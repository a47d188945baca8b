"""Seed manager: the seed range, profiles, the next seed and one generator per image."""

from __future__ import annotations

import random

import pytest
import torch

from fluxbot.core.requests import SEED_MAX, GenerationRequest, RequestError
from fluxbot.core.seeds import (
    SeedMode,
    SeedProfile,
    advance_seed,
    batch_seeds,
    make_generators,
    next_seed,
    parse_seed,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), ("0", 0), (SEED_MAX, SEED_MAX), (str(SEED_MAX), SEED_MAX), (" 42 ", 42), ("007", 7)],
)
def test_parse_seed_accepts_the_whole_range(value: str | int, expected: int) -> None:
    assert parse_seed(value) == expected


@pytest.mark.parametrize(
    "value",
    ["-1", "1.5", "abc", "", "4294967296", "1e3", "+5", "٣", -1, 2**32, 1.5, True, False, None],
)
def test_parse_seed_refuses_anything_else_naming_the_range(value: object) -> None:
    with pytest.raises(RequestError) as caught:
        parse_seed(value)  # type: ignore[arg-type]
    assert "0 to 4294967295" in str(caught.value)
    assert caught.value.field_name == "seed"


def test_parse_seed_error_names_the_field_it_came_from() -> None:
    with pytest.raises(RequestError, match=r"^--seed 'x'"):
        parse_seed("x", "--seed")


@pytest.mark.parametrize("text", ["random", "increment", "fixed:0", "fixed:4294967295"])
def test_profile_round_trips_through_its_stored_text(text: str) -> None:
    profile = SeedProfile.parse(text)
    assert str(profile) == text
    assert SeedProfile.parse(str(profile)) == profile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RANDOM", SeedProfile()),
        (" Increment ", SeedProfile(SeedMode.INCREMENT)),
        ("fixed 42", SeedProfile.fixed(42)),
        ("Fixed: 42", SeedProfile.fixed(42)),
        ("fixed=42", SeedProfile.fixed(42)),
    ],
)
def test_profile_parse_forgives_case_and_spacing(text: str, expected: SeedProfile) -> None:
    assert SeedProfile.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "fixed", "fixed:", "fixed:-1", "fixed:abc", "fixed:4294967296", "random:5", "often"],
)
def test_profile_parse_refuses_bad_text_listing_the_forms(text: str) -> None:
    with pytest.raises(RequestError) as caught:
        SeedProfile.parse(text)
    message = str(caught.value)
    assert "'random'" in message and "'increment'" in message and "'fixed:N'" in message


def test_profile_refuses_inconsistent_fields() -> None:
    with pytest.raises(RequestError):
        SeedProfile(SeedMode.FIXED)
    with pytest.raises(RequestError):
        SeedProfile(SeedMode.RANDOM, 5)
    assert SeedProfile("fixed", 5).mode is SeedMode.FIXED  # type: ignore[arg-type]


def test_default_profile_is_random() -> None:
    assert SeedProfile().mode is SeedMode.RANDOM
    assert str(SeedProfile()) == "random"


def test_explicit_seed_wins_over_every_profile() -> None:
    for profile in (SeedProfile(), SeedProfile.fixed(5), SeedProfile(SeedMode.INCREMENT)):
        assert next_seed(profile, 100, random.Random(1), explicit=9) == 9
        assert next_seed(profile, 100, random.Random(1), explicit="10") == 10


def test_explicit_seed_is_validated() -> None:
    with pytest.raises(RequestError):
        next_seed(SeedProfile(), None, explicit="-1")


def test_fixed_profile_always_gives_its_seed() -> None:
    assert next_seed(SeedProfile.fixed(77), None) == 77
    assert next_seed(SeedProfile.fixed(77), 5, last_count=4) == 77


def test_increment_continues_after_the_last_jobs_images() -> None:
    profile = SeedProfile.parse("increment")
    assert next_seed(profile, 100) == 101
    assert next_seed(profile, 100, last_count=4) == 104


@pytest.mark.parametrize(
    ("last", "count", "expected"), [(SEED_MAX, 1, 0), (SEED_MAX - 1, 4, 2), (SEED_MAX - 3, 4, 0)]
)
def test_increment_wraps_at_two_to_the_32(last: int, count: int, expected: int) -> None:
    assert next_seed(SeedProfile(SeedMode.INCREMENT), last, last_count=count) == expected


def test_increment_without_history_starts_from_the_rng() -> None:
    profile = SeedProfile(SeedMode.INCREMENT)
    assert next_seed(profile, None, random.Random(3)) == random.Random(3).randint(0, SEED_MAX)


def test_increment_refuses_a_bad_count() -> None:
    with pytest.raises(ValueError):
        next_seed(SeedProfile(SeedMode.INCREMENT), 5, last_count=0)


def test_random_profile_draws_from_the_given_rng() -> None:
    first = next_seed(SeedProfile(), None, random.Random(7))
    assert first == next_seed(SeedProfile(), 123, random.Random(7))
    assert first == random.Random(7).randint(0, SEED_MAX)
    draws = {next_seed(SeedProfile(), None, random.Random(n)) for n in range(20)}
    assert len(draws) == 20
    assert all(0 <= seed <= SEED_MAX for seed in draws)


def test_batch_seeds_match_the_requests_rule() -> None:
    request = GenerationRequest(prompt="a fox", seed=SEED_MAX - 1, count=4)
    assert batch_seeds(SEED_MAX - 1, 4) == request.seeds == [SEED_MAX - 1, SEED_MAX, 0, 1]
    assert advance_seed(SEED_MAX, 2) == 1


def test_make_generators_gives_one_reproducible_cpu_generator_per_seed() -> None:
    first = make_generators([1, 2, 1])
    again = make_generators([1])
    assert len(first) == 3
    assert all(g.device.type == "cpu" for g in first)
    noise = [torch.randn(8, generator=g) for g in first]
    assert torch.equal(noise[0], noise[2])
    assert not torch.equal(noise[0], noise[1])
    assert torch.equal(noise[0], torch.randn(8, generator=again[0]))
    assert [g.initial_seed() for g in first] == [1, 2, 1]


def test_make_generators_accepts_the_top_seed_and_refuses_out_of_range() -> None:
    assert make_generators([SEED_MAX])[0].initial_seed() == SEED_MAX
    with pytest.raises(RequestError):
        make_generators([2**32])
