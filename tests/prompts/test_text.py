"""Normalisation: what Discord clients and keyboards do to text must not change its meaning."""

from __future__ import annotations

import pytest

from fluxbot.prompts.text import normalise_text

FLAGS = ("no", "seed", "ar", "aspect", "steps", "count")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ａ ｒｅｄ　ｆｏｘ", "a red fox"),  # fullwidth letters and ideographic space (NFKC)
        ("ﬁre ﬂy", "fire fly"),  # ligatures
        ("a “red” fox’s den", 'a "red" fox\'s den'),
        ("a\u200bred\u200c fox\u2060\ufeff", "ared fox"),
        ("soft\u00adhyphen", "softhyphen"),
        ("bell\x07 and\x00 nul", "bell and nul"),
        ("  lots   of\tspace  ", "lots of space"),
        ("1990–2000 and a cat — sleeping", "1990-2000 and a cat - sleeping"),
        ("minus −5", "minus -5"),
    ],
)
def test_normalise_text(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


def test_line_breaks_become_separators_unless_one_is_there() -> None:
    assert normalise_text("red fox\nforest\r\n\nriver.\nnight,\nsky") == (
        "red fox, forest, river. night, sky"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a cat —ar 16:9", "a cat --ar 16:9"),
        ("a cat –ar 16:9", "a cat --ar 16:9"),
        ("a cat —-seed 4", "a cat --seed 4"),
        ("a cat ——no dogs", "a cat --no dogs"),
        ("a cat -\u200b-steps 4", "a cat --steps 4"),
        ("a cat —AR 16:9", "a cat --AR 16:9"),
    ],
)
def test_long_dashes_before_a_flag_name_become_a_double_hyphen(raw: str, expected: str) -> None:
    assert normalise_text(raw, FLAGS) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "a cat —sleeping",  # not a flag name
        "a cat—ar",  # not at the start of a word
        "a cat — ar",  # not directly before the name
        "a cat —area",  # a longer word, not the flag
    ],
)
def test_long_dashes_elsewhere_become_a_hyphen(raw: str) -> None:
    assert "--" not in normalise_text(raw, FLAGS)
    assert "—" not in normalise_text(raw, FLAGS)


def test_without_flag_names_no_dash_becomes_a_flag() -> None:
    assert normalise_text("a cat —ar 16:9") == "a cat -ar 16:9"
