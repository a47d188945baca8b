"""Inline flags and slash options: the same values, checked the same way; options win."""

from __future__ import annotations

import pytest

from fluxbot.core.requests import ASPECT_RATIOS, RequestError
from fluxbot.prompts.flags import (
    ParsedPrompt,
    merge_options,
    parse_aspect,
    parse_count,
    parse_prompt,
    parse_steps,
)


def test_no_flags_gives_the_normalised_text_and_nones() -> None:
    assert parse_prompt("  a  red fox ") == ParsedPrompt(text="a red fox")


def test_every_flag_is_read() -> None:
    parsed = parse_prompt("a red fox --no blur, dogs --seed 42 --ar 16:9 --steps 3 --count 2")
    assert parsed == ParsedPrompt(
        text="a red fox", negative="blur, dogs", seed=42, aspect="16:9", steps=3, count=2
    )


@pytest.mark.parametrize(
    "raw",
    [
        "a red fox —ar 16:9 —seed 7",
        "a red fox –ar 16:9 –seed 7",
        "a red fox —-ar 16:9 --seed 7",
        "a red fox --AR 16:9 --Seed 7",
        "a red fox --aspect 16:9 --seed=7",
        "a red fox\n—ar 16:9\n—seed 7",
    ],
)
def test_flags_survive_what_clients_do_to_dashes(raw: str) -> None:
    parsed = parse_prompt(raw)
    assert (parsed.text, parsed.aspect, parsed.seed) == ("a red fox", "16:9", 7)


def test_an_em_dash_in_prose_is_not_a_flag() -> None:
    assert parse_prompt("a cat —sleeping").text == "a cat -sleeping"
    assert parse_prompt("a cat — no hat").negative is None


def test_no_takes_text_up_to_the_next_flag_and_repeats_join() -> None:
    parsed = parse_prompt("a cat --no dogs, birds --ar 1:1 --no trees")
    assert parsed.negative == "dogs, birds, trees"
    assert parsed.aspect == "1:1"


def test_words_after_a_one_word_flag_go_back_to_the_prompt() -> None:
    parsed = parse_prompt("a cat --seed 5 in the snow")
    assert (parsed.text, parsed.seed) == ("a cat in the snow", 5)


def test_unknown_flag_is_named_and_known_ones_listed() -> None:
    with pytest.raises(RequestError) as caught:
        parse_prompt("a cat --stylize 100")
    message = str(caught.value)
    assert "--stylize" in message
    for flag in ("--no", "--seed", "--ar", "--aspect", "--steps", "--count"):
        assert flag in message


def test_bad_seed_flag_names_the_range() -> None:
    with pytest.raises(RequestError, match="0 to 4294967295") as caught:
        parse_prompt("a cat --seed -1")
    assert caught.value.field_name == "--seed"


def test_bad_aspect_lists_the_presets() -> None:
    with pytest.raises(RequestError) as caught:
        parse_prompt("a cat --ar 5:1")
    assert all(name in str(caught.value) for name in ASPECT_RATIOS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("16:9", "16:9"), ("16x9", "16:9"), ("16/9", "16:9"), ("32:18", "16:9"), ("2:2", "1:1")],
)
def test_aspect_spellings(value: str, expected: str) -> None:
    assert parse_aspect(value) == expected


@pytest.mark.parametrize("name", list(ASPECT_RATIOS))
def test_every_preset_is_accepted_by_its_own_name(name: str) -> None:
    # Regression: "21:9" was reduced to 7:3 and refused, in a message listing "21:9".
    assert parse_aspect(name) == name
    assert parse_prompt(f"a cat --ar {name}").aspect == name


def test_a_preset_named_unreduced_is_found_from_any_spelling_of_its_ratio() -> None:
    assert parse_aspect("7:3") == "21:9" and parse_aspect("42x18") == "21:9"


@pytest.mark.parametrize("value", ["wide", "16:", "0:0", "16:10", ""])
def test_aspect_refusals(value: str) -> None:
    with pytest.raises(RequestError):
        parse_aspect(value)


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (parse_steps, ["1", 50, "4"], ["0", "51", "x", "2.5", True]),
        (parse_count, ["1", 4], ["0", "5", "two"]),
    ],
)
def test_whole_number_flags(parse, good, bad) -> None:  # type: ignore[no-untyped-def]
    for value in good:
        assert parse(value) == int(value)
    for value in bad:
        with pytest.raises(RequestError, match="a whole number from"):
            parse(value)


def test_the_same_flag_twice_is_refused() -> None:
    with pytest.raises(RequestError, match="once"):
        parse_prompt("a cat --ar 1:1 --aspect 16:9")


@pytest.mark.parametrize("raw", ["--ar 16:9", "  --seed 4 ", ", --no dogs"])
def test_a_prompt_of_only_flags_is_refused(raw: str) -> None:
    with pytest.raises(RequestError, match="besides the flags"):
        parse_prompt(raw)


def test_empty_no_and_missing_values_are_refused() -> None:
    with pytest.raises(RequestError, match="--no"):
        parse_prompt("a cat --no --seed 4")
    with pytest.raises(RequestError, match="--seed"):
        parse_prompt("a cat --seed")


def test_too_long_prompt_is_refused_before_parsing() -> None:
    with pytest.raises(RequestError, match="at most 6000"):
        parse_prompt("fox " * 2000)


def test_weights_and_colons_stay_in_the_text() -> None:
    assert parse_prompt("(red fox:1.3), [blur] --ar 3:2").text == "(red fox:1.3), [blur]"


def test_slash_options_win_over_flags() -> None:
    parsed = parse_prompt("a cat --no dogs --seed 1 --ar 1:1 --steps 2 --count 1")
    merged = merge_options(parsed, negative="birds", seed="9", aspect="9:16", steps=4, count="3")
    assert merged == ParsedPrompt(
        text="a cat", negative="birds", seed=9, aspect="9:16", steps=4, count=3
    )


def test_absent_slash_options_keep_the_flags() -> None:
    parsed = parse_prompt("a cat --seed 1 --ar 1:1")
    assert merge_options(parsed) == parsed
    assert merge_options(parsed, steps=2).seed == 1


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [("seed", "abc", "--seed abc"), ("aspect", "5:1", "--ar 5:1"), ("steps", 99, "--steps 99")],
)
def test_slash_options_are_checked_like_flags(option: str, value: object, flag: str) -> None:
    with pytest.raises(RequestError) as from_option:
        merge_options(ParsedPrompt("a cat"), **{option: value})
    with pytest.raises(RequestError) as from_flag:
        parse_prompt(f"a cat {flag}")
    assert from_option.value.allowed == from_flag.value.allowed
    assert from_option.value.field_name == option


def test_slash_negative_is_normalised() -> None:
    assert merge_options(ParsedPrompt("a cat"), negative=" “blur”\u200b ").negative == '"blur"'
