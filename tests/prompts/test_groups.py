"""Grouping and weights: the units the budget keeps or drops, and the plain rendered prompt."""

from __future__ import annotations

import pytest

from fluxbot.prompts.groups import (
    PromptGroup,
    parse_weights,
    render_groups,
    split_groups,
    strip_weights,
)


def texts(prompt: str) -> list[str]:
    return [group.text for group in split_groups(prompt)]


def weights(prompt: str) -> dict[str, float]:
    return {group.text: group.weight for group in split_groups(prompt)}


def test_commas_semicolons_and_sentence_ends_separate_groups() -> None:
    assert texts("red fox, forest; river. It is night! Sunny? yes") == [
        "red fox",
        "forest",
        "river",
        "It is night",
        "Sunny",
        "yes",
    ]


def test_numbers_are_not_cut() -> None:
    assert texts("1,000 candles, 3.5 stars, f/1.8 lens") == [
        "1,000 candles",
        "3.5 stars",
        "f/1.8 lens",
    ]


def test_empty_parts_are_skipped() -> None:
    assert texts(", red fox,, ,forest,") == ["red fox", "forest"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("(red fox:1.3), tree", {"red fox": 1.3, "tree": 1.0}),
        ("(red fox), tree", {"red fox": 1.1, "tree": 1.0}),
        ("((red fox)), tree", {"red fox": 1.21, "tree": 1.0}),
        ("[red fox], tree", {"red fox": 0.9, "tree": 1.0}),
        ("[[red fox]], tree", {"red fox": 0.81, "tree": 1.0}),
        ("(red fox:0.5), tree", {"red fox": 0.5, "tree": 1.0}),
        ("((red fox):2), tree", {"red fox": 2.2, "tree": 1.0}),
        ("(red fox : 1.5 ), tree", {"red fox": 1.5, "tree": 1.0}),
    ],
)
def test_weight_syntax(prompt: str, expected: dict[str, float]) -> None:
    assert weights(prompt) == expected


def test_a_weighted_span_with_commas_weights_each_group() -> None:
    assert weights("(red fox, forest:1.2), river") == {"red fox": 1.2, "forest": 1.2, "river": 1.0}


def test_a_group_with_a_weighted_word_takes_the_highest_weight() -> None:
    assert weights("a (red:1.4) fox in [fog]") == {"a red fox in fog": 1.4}


def test_escaped_and_unmatched_brackets_are_literal() -> None:
    assert strip_weights(r"a sign saying \(hi\) :) and [unclosed") == (
        "a sign saying (hi) :) and [unclosed"
    )
    assert all(w == 1.0 for _, w in parse_weights(r"a \(b\) :)"))


def test_render_removes_weight_syntax() -> None:
    assert strip_weights("(red fox:1.3), [blurry], ((sharp)), forest. It is night!") == (
        "red fox, blurry, sharp, forest. It is night!"
    )


def test_render_after_a_drop_keeps_the_stronger_separator() -> None:
    groups = split_groups("red fox, forest. It is night, river")
    assert render_groups(groups, {1}) == "red fox. It is night, river"
    assert render_groups(groups, {3}) == "red fox, forest. It is night"
    assert render_groups(groups, {1, 2, 3}) == "red fox"


def test_groups_carry_position_and_separator() -> None:
    assert split_groups("red fox, forest.") == [
        PromptGroup("red fox", 1.0, 0, ","),
        PromptGroup("forest", 1.0, 1, "."),
    ]


LONG = (
    "a woman dressed in red walking with a dog in the park and a man holding a black and white "
    "umbrella under the rain"
)


def test_a_long_part_is_cut_into_phrases_before_prepositions() -> None:
    assert texts(LONG) == [
        "a woman dressed in red walking",
        "with a dog",
        "in the park",
        "and a man",
        "holding a black and white umbrella",
        "under the rain",
    ]
    assert strip_weights(LONG) == LONG


def test_fixed_expressions_and_adjective_pairs_are_not_cut() -> None:
    prompt = "a red and blue car and a black and white cat covered with snow sitting on a wall"
    assert texts(prompt) == [
        "a red and blue car",
        "and a black and white cat covered with snow sitting",
        "on a wall",
    ]


def test_a_short_part_is_not_cut() -> None:
    assert texts("a fox with a hat in the snow") == ["a fox with a hat in the snow"]


def test_phrases_keep_their_own_weights() -> None:
    prompt = "a woman walking a dog slowly along the beach (with a red kite:1.4) [in the fog today]"
    assert weights(prompt) == {
        "a woman walking a dog slowly along the beach": 1.0,
        "with a red kite": 1.4,
        "in the fog today": 0.9,
    }
