"""Splitting a prompt into weighted groups, the units the token budget keeps or drops.

Weights use the syntax people bring from Stable Diffusion UIs: `(red fox:1.3)`, `(red fox)` =
1.1 (nested parentheses multiply), `[red fox]` = 0.9, and `\\(` for a literal parenthesis.
FLUX has no prompt weighting: its T5 and CLIP encoders see plain text, and scaling embeddings
distorts its output. So fluxbot reads the weights as priorities only (the budget drops
low-weight groups first) and renders the final prompt without the weight syntax.

Groups are the parts between commas, semicolons and sentence ends. A long comma-less part (prose
is common with FLUX) is cut further into phrases before prepositions and participles such as
`with`, `in`, `holding`, using NLTK's whitespace tokeniser and `MWETokenizer` to keep fixed
expressions (`black and white`, `dressed in`) whole.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise

from nltk.tokenize import MWETokenizer, WhitespaceTokenizer

DEFAULT_WEIGHT = 1.0
PAREN_WEIGHT = 1.1
BRACKET_WEIGHT = 0.9
LONG_GROUP_WORDS = 12
MIN_PHRASE_WORDS = 2

# Words that start a new phrase inside a long part of a prompt.
PHRASE_STARTERS = frozenset(
    {
        "with",
        "without",
        "while",
        "wearing",
        "holding",
        "featuring",
        "surrounded",
        "in",
        "on",
        "at",
        "under",
        "beneath",
        "behind",
        "beside",
        "near",
        "above",
        "below",
        "inside",
        "outside",
        "against",
        "during",
    }
)
# `and`/`or` start a phrase only before one of these: `a fox and a crow`, not `red and blue car`.
DETERMINERS = frozenset(
    {"a", "an", "the", "his", "her", "its", "their", "some", "two", "three", "many", "several"}
)
CONJUNCTIONS = frozenset({"and", "or"})
# Fixed expressions that hold a phrase starter and must not be cut apart.
FIXED_EXPRESSIONS: tuple[tuple[str, ...], ...] = (
    ("black", "and", "white"),
    ("salt", "and", "pepper"),
    ("rock", "and", "roll"),
    ("hand", "in", "hand"),
    ("arm", "in", "arm"),
    ("all", "in", "one"),
    ("made", "in"),
    ("dressed", "in"),
    ("covered", "in"),
    ("covered", "with"),
    ("filled", "with"),
    ("lit", "with"),
    ("turned", "on"),
    ("based", "on"),
    ("close", "up"),
    ("one", "with"),
)

_SEPARATOR_STRENGTH = {"": 0, " ": 1, ",": 2, ";": 3}
_SENTENCE_END = 4
_WEIGHT_TOKEN = re.compile(
    r"\\[()\[\]\\]"  # an escaped bracket or backslash: literal
    r"|\("
    r"|\["
    r"|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)"  # ':1.3)' closes a weighted group
    r"|\)"
    r"|\]"
    r"|[^\\()\[\]:]+"
    r"|[\\:]"
)
_SEPARATOR = re.compile(r"(?<!\d),|,(?!\d)|;|[.!?]+(?=\s|$)")
_MWE_JOIN = "\x1f"


@dataclass(frozen=True, slots=True)
class PromptGroup:
    """One part of a prompt: its plain text, its weight (a priority), its position, and the
    punctuation that ended it (`,` `;` `.` ..., `" "` inside a cut sentence, `""` at the end)."""

    text: str
    weight: float
    index: int
    separator: str


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Text runs and their weights, brackets removed; unmatched brackets stay as literal text."""
    runs: list[list[str | float]] = []
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _WEIGHT_TOKEN.finditer(text):
        token, number = match.group(0), match.group(1)
        if len(token) == 2 and token.startswith("\\"):
            runs.append([token[1], DEFAULT_WEIGHT])
        elif token in ("(", "["):
            (round_open if token == "(" else square_open).append(len(runs))
            runs.append([token, DEFAULT_WEIGHT])
        elif number is not None and round_open:
            _close(runs, round_open.pop(), float(number))
        elif token == ")" and round_open:
            _close(runs, round_open.pop(), PAREN_WEIGHT)
        elif token == "]" and square_open:
            _close(runs, square_open.pop(), BRACKET_WEIGHT)
        else:
            runs.append([token, DEFAULT_WEIGHT])
    return [(str(t), float(w)) for t, w in runs if t]


def _close(runs: list[list[str | float]], opener: int, factor: float) -> None:
    runs[opener][0] = ""  # the bracket was syntax, not text
    for run in runs[opener + 1 :]:
        run[1] = float(run[1]) * factor


def split_groups(text: str, long_group_words: int = LONG_GROUP_WORDS) -> list[PromptGroup]:
    """The prompt's groups in order; parts longer than `long_group_words` words are cut into
    phrases. Expects normalised text (see `normalise_text`)."""
    groups: list[tuple[str, float, str]] = []
    for pieces, separator in _clauses(parse_weights(text)):
        clause = "".join(piece for piece, _ in pieces)
        weights = [weight for piece, weight in pieces for _ in piece]
        spans = _phrase_spans(clause, long_group_words)
        if not spans:
            if groups:  # an empty part (`a,, b`): keep the stronger separator
                last_text, last_weight, last_sep = groups[-1]
                groups[-1] = (last_text, last_weight, _stronger(last_sep, separator))
            continue
        for number, (start, end) in enumerate(spans):
            phrase_sep = separator if number == len(spans) - 1 else " "
            groups.append(
                (_squash(clause[start:end]), _span_weight(clause, weights, start, end), phrase_sep)
            )
    return [
        PromptGroup(text=t, weight=round(w, 4), index=i, separator=s)
        for i, (t, w, s) in enumerate(groups)
    ]


def _clauses(runs: list[tuple[str, float]]) -> list[tuple[list[tuple[str, float]], str]]:
    clauses: list[tuple[list[tuple[str, float]], str]] = []
    current: list[tuple[str, float]] = []
    for run_text, weight in runs:
        position = 0
        for match in _SEPARATOR.finditer(run_text):
            current.append((run_text[position : match.start()], weight))
            clauses.append((current, match.group(0)))
            current, position = [], match.end()
        current.append((run_text[position:], weight))
    clauses.append((current, ""))
    return clauses


def _phrase_spans(clause: str, long_group_words: int) -> list[tuple[int, int]]:
    """Character spans of the phrases of one clause: one span unless the clause is long."""
    word_spans = list(WhitespaceTokenizer().span_tokenize(clause))
    if not word_spans:
        return []
    if len(word_spans) <= long_group_words:
        return [(word_spans[0][0], word_spans[-1][1])]
    words = [clause[s:e].lower().strip("\"'()[]{}:-") for s, e in word_spans]
    units = _units(words)
    cuts = [0]
    for first, end in units:
        if end - first > 1:  # a fixed expression: never cut before it either
            continue
        if first - cuts[-1] < MIN_PHRASE_WORDS or len(words) - first < MIN_PHRASE_WORDS:
            continue
        following = words[first + 1] if first + 1 < len(words) else ""
        if words[first] in PHRASE_STARTERS or (
            words[first] in CONJUNCTIONS and following in DETERMINERS
        ):
            cuts.append(first)
    bounds = [*cuts, len(words)]
    return [(word_spans[a][0], word_spans[b - 1][1]) for a, b in pairwise(bounds)]


def _units(words: list[str]) -> list[tuple[int, int]]:
    """Word-index ranges after joining fixed expressions, so no cut falls inside one."""
    merged = MWETokenizer(list(FIXED_EXPRESSIONS), separator=_MWE_JOIN).tokenize(words)
    units: list[tuple[int, int]] = []
    position = 0
    for token in merged:
        size = token.count(_MWE_JOIN) + 1
        units.append((position, position + size))
        position += size
    return units


def _span_weight(clause: str, weights: list[float], start: int, end: int) -> float:
    """A group's priority is the highest weight of any of its characters."""
    visible = [weights[i] for i in range(start, end) if not clause[i].isspace()]
    return max(visible, default=DEFAULT_WEIGHT)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _strength(separator: str) -> int:
    if any(char in separator for char in ".!?"):
        return _SENTENCE_END
    return _SEPARATOR_STRENGTH.get(separator, 1)


def _stronger(first: str, second: str) -> str:
    return second if _strength(second) > _strength(first) else first


def render_groups(groups: Sequence[PromptGroup], dropped: Collection[int] = ()) -> str:
    """The plain prompt of `groups` without those whose index is in `dropped`.

    Between two kept groups goes the strongest separator of the stretch between them, so
    dropping `forest` from `red fox, forest. It is night` gives `red fox. It is night`. The
    last kept group keeps its own sentence end, if it had one.
    """
    parts: list[str] = []
    pending = ""
    last_end = ""
    for group in groups:
        if group.index in dropped:
            pending = _stronger(pending, group.separator) if parts else ""
            continue
        if parts:
            parts.append(_render_separator(pending))
        parts.append(group.text)
        pending = last_end = group.separator
    if parts and _strength(last_end) == _SENTENCE_END:
        parts.append(last_end)
    return "".join(parts)


def _render_separator(separator: str) -> str:
    return " " if separator in ("", " ") else f"{separator} "


def strip_weights(text: str) -> str:
    """The prompt as the encoders get it: weight syntax removed, groups re-joined."""
    return render_groups(split_groups(text))
