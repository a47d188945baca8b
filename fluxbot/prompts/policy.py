"""Content policy: refuse prompts that ask for what a server, or fluxbot itself, does not allow.

Three lists, checked in this order:
- built-in, never allowed (sexual content involving minors, sexual violence): a term of its own
  (`NEVER_TERMS`), or a minor term and a sexual term anywhere in the same prompt. No setting
  turns this off.
- the operator's blocklist (FLUXBOT_BLOCKLIST: words or phrases).
- built-in explicit sexual terms, only where `strict` (channels not marked NSFW).

Matching is on whole words after NFKC, case folding, accent and look-alike letter folding, and
Porter stemming (so `nudes` matches `nude` but `class` never matches `ass`), and it sees through
common disguises: s p a c i n g, d.o.t.s and under_scores, l33tspeak, reeeepeated letters and
zero-width characters. An entry written `=word` matches that exact word only, not its other
forms (`=sex` leaves `sexes` alone). Entries without letters or digits (emoji) match as text.

Only the prompt is checked, not the negative prompt (`--no nudity` is the opposite of a
request for it). The built-in lists are deliberately cautious: a minor term next to a sexual
one is refused even when the pair could be innocent (`baby oil, nude`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from nltk.stem import PorterStemmer
from nltk.tokenize import RegexpTokenizer

from fluxbot.core.errors import UserError
from fluxbot.prompts.groups import strip_weights
from fluxbot.prompts.policy_terms import (
    EXPLICIT_TERMS,
    HOMOGLYPHS,
    LEET,
    MINOR_TERMS,
    NEVER_TERMS,
    NUMBER_WORDS,
    SUGGESTIVE_TERMS,
)
from fluxbot.prompts.text import normalise_text

REASON_NEVER = (
    "This prompt asks for something fluxbot never makes, in any channel: sexual content "
    "involving minors, or sexual violence."
)
REASON_MINORS = (
    "This prompt puts a minor together with sexual or suggestive content, which fluxbot never "
    "makes, in any channel."
)
REASON_BLOCKLIST = "This prompt contains a word or phrase that this server has blocked."
REASON_EXPLICIT = (
    "This prompt asks for explicit sexual content, which is only allowed in channels marked NSFW."
)

MAX_SPACED_WORD = 24
EXACT = "="  # an entry `=word` matches that exact word, not every word of its stem
ADULT_AGE = 18

_WORD = RegexpTokenizer(r"[a-z0-9@$]+(?:[._*'~-]+[a-z0-9@$]+)*")
_INNER = re.compile(r"[._*'~-]+")
_TRIPLE = re.compile(r"(.)\1{2,}")
_REPEATS = re.compile(r"(.)\1+")
_HOMOGLYPH_TABLE = str.maketrans(HOMOGLYPHS)
_LEET_TABLE = str.maketrans(LEET)
_AGE_NUMBER = r"(\d{1,2}|" + "|".join(NUMBER_WORDS) + ")"
_AGE = re.compile(
    rf"\b{_AGE_NUMBER}\s*-?\s*(?:yo|y/o|y\.o|yrs?\.?\s*-?\s*old|years?\s*-?\s*old)\b"
    rf"|\bage[ds]?\s*:?\s*{_AGE_NUMBER}\b"
)


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """The policy's answer: `reason` is a sentence for the user, `matched` the listed term that
    matched (for the log, not to be echoed)."""

    allowed: bool
    reason: str | None = None
    matched: str | None = None


ALLOWED = PolicyVerdict(allowed=True)


class PolicyRefused(UserError):
    """The policy refused a prompt here; the message is the verdict's reason, fit for the user."""


@dataclass(frozen=True, slots=True)
class _TermIndex:
    """A word list compiled to keys (stemmed `"bare breast"`, exact `"=sex"`) -> its entry."""

    keys: dict[str, str]
    fragments: tuple[str, ...]  # entries without words (emoji), matched as substrings
    max_words: int

    def find(self, candidates: set[str], folded: str) -> str | None:
        hits = candidates & self.keys.keys()
        if hits:
            return self.keys[min(hits)]
        return next((f for f in self.fragments if f in folded), None)


@dataclass(frozen=True, slots=True, init=False)
class ContentPolicy:
    """A channel's policy: the operator's blocklist, plus explicit terms when `strict`.

    The built-in never-allowed list applies to every policy and has no switch.
    """

    blocklist: tuple[str, ...]
    strict: bool
    _stemmer: PorterStemmer = field(repr=False, compare=False)
    _never: _TermIndex = field(repr=False, compare=False)
    _minor: _TermIndex = field(repr=False, compare=False)
    _sexual: _TermIndex = field(repr=False, compare=False)
    _explicit: _TermIndex = field(repr=False, compare=False)
    _custom: _TermIndex = field(repr=False, compare=False)

    def __init__(self, blocklist: Iterable[str] = (), strict: bool = True) -> None:
        entries = tuple(entry.strip() for entry in blocklist if entry and entry.strip())
        stemmer = PorterStemmer()
        set_ = object.__setattr__
        set_(self, "blocklist", entries)
        set_(self, "strict", bool(strict))
        set_(self, "_stemmer", stemmer)
        set_(self, "_never", _compile(NEVER_TERMS, stemmer))
        set_(self, "_minor", _compile(MINOR_TERMS, stemmer))
        set_(self, "_sexual", _compile(EXPLICIT_TERMS + SUGGESTIVE_TERMS, stemmer))
        set_(self, "_explicit", _compile(EXPLICIT_TERMS, stemmer))
        set_(self, "_custom", _compile(entries, stemmer))

    @classmethod
    def from_settings(cls, settings: Any, *, nsfw_channel: bool = False) -> ContentPolicy:
        """The policy for a channel: strict unless the channel is marked NSFW."""
        return cls(settings.blocklist, strict=not nsfw_channel)

    def for_channel(self, *, nsfw_channel: bool) -> ContentPolicy:
        """The same blocklist, strict unless the channel is marked NSFW."""
        return ContentPolicy(self.blocklist, strict=not nsfw_channel)

    def check(self, prompt: str) -> PolicyVerdict:
        """Whether `prompt` may be generated under this policy, and why not."""
        indexes = (self._never, self._minor, self._sexual, self._custom)
        max_words = max(index.max_words for index in indexes)
        # The encoders see the prompt without weight syntax, where `(nu)(de)` reads `nude`.
        readings = {fold_for_matching(prompt), fold_for_matching(strip_weights(prompt))}
        candidates = set().union(
            *(match_candidates(text, self._stemmer, max_words) for text in readings)
        )
        folded = " \n ".join(sorted(readings))
        if term := self._never.find(candidates, folded):
            return PolicyVerdict(False, REASON_NEVER, term)
        minor = self._minor.find(candidates, folded) or find_minor_age(folded)
        sexual = self._sexual.find(candidates, folded) if minor else None
        if minor and sexual:
            return PolicyVerdict(False, REASON_MINORS, f"{minor} + {sexual}")
        if term := self._custom.find(candidates, folded):
            return PolicyVerdict(False, REASON_BLOCKLIST, term)
        if self.strict and (term := self._explicit.find(candidates, folded)):
            return PolicyVerdict(False, REASON_EXPLICIT, term)
        return ALLOWED


def fold_for_matching(text: str) -> str:
    """Normalised, case-folded text without accents, look-alike letters mapped to Latin."""
    text = normalise_text(text).casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    return text.translate(_HOMOGLYPH_TABLE)


def find_minor_age(folded: str) -> str | None:
    """An age under 18 written as `12 year old`, `12yo`, `twelve-year-old` or `aged 12`."""
    for match in _AGE.finditer(folded):
        number = match.group(1) or match.group(2)
        age = NUMBER_WORDS[number] if number in NUMBER_WORDS else int(number)
        if 0 < age < ADULT_AGE:
            return match.group(0)
    return None


def match_candidates(folded: str, stemmer: PorterStemmer, max_words: int) -> set[str]:
    """Every word and phrase (up to `max_words` words) the prompt could be read as: stemmed
    (`nude`, `bare breast`) and exact (`=sex`, `=bare =breasts`).

    Three readings of the words: dotted words joined (`n.u.d.e` -> `nude`), split
    (`dog-sex` -> `dog sex`), and single letters run together (`n u d e` -> `nude`); each word
    also in its leetspeak and de-repeated forms. Letter runs add every 3+ letter window.
    """
    tokens = _WORD.tokenize(folded)
    joined = [_INNER.sub("", token) for token in tokens]
    pieces = [piece for token in tokens for piece in _INNER.split(token) if piece]
    spaced = _merge_single_letters(pieces)
    spellings: dict[str, frozenset[str]] = {}
    stems: dict[str, frozenset[str]] = {}

    def exact_forms(word: str) -> frozenset[str]:
        if word not in spellings:
            spellings[word] = frozenset(EXACT + s for s in _spellings(word))
        return spellings[word]

    def stem_forms(word: str) -> frozenset[str]:
        if word not in stems:
            stems[word] = frozenset(stemmer.stem(s) for s in _spellings(word))
        return stems[word]

    candidates: set[str] = set()
    for reading in (joined, pieces, spaced):
        for forms in (exact_forms, stem_forms):
            candidates.update(_grams([forms(word) for word in reading], max_words))
    for window in _letter_windows(pieces):
        candidates.update(exact_forms(window) | stem_forms(window))
    return candidates


def _grams(lattice: list[frozenset[str]], max_words: int) -> set[str]:
    """All runs of 1 to `max_words` consecutive words, each word in any of its forms."""
    grams: set[str] = set()
    for start in range(len(lattice)):
        for size in range(1, min(max_words, len(lattice) - start) + 1):
            grams.update(" ".join(words) for words in product(*lattice[start : start + size]))
    return grams


def _spellings(word: str) -> set[str]:
    """The word, its leetspeak reading (`s3x` -> `sex`) and, if it has a letter repeated three
    times or more, its de-repeated readings (`nuuude` -> `nuude`, `nude`)."""
    spellings = {word}
    if not word.isdigit() and any(char in LEET for char in word):
        spellings.add(word.translate(_LEET_TABLE))
    for spelling in list(spellings):
        if _TRIPLE.search(spelling):
            spellings.add(_TRIPLE.sub(r"\1\1", spelling))
            spellings.add(_REPEATS.sub(r"\1", spelling))
    return spellings


def _merge_single_letters(words: list[str]) -> list[str]:
    """Runs of two or more one-character words joined into one word."""
    merged: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if run:
            merged.extend(["".join(run)] if len(run) > 1 else run)
            run = []
        if word:
            merged.append(word)
    return merged


def _letter_windows(words: list[str]) -> list[str]:
    """Every 3+ letter stretch of each run of one-character words (`a n u d e` -> `nude`)."""
    windows: list[str] = []
    run = ""
    for word in [*words, ""]:
        if len(word) == 1:
            run += word
            continue
        for start in range(len(run)):
            for end in range(start + 3, min(len(run), start + MAX_SPACED_WORD) + 1):
                windows.append(run[start:end])
        run = ""
    return windows


def _compile(entries: Iterable[str], stemmer: PorterStemmer) -> _TermIndex:
    """Keys of each entry: its words stemmed, or exact (`=` prefix on each) for `=entry`."""
    keys: dict[str, str] = {}
    fragments: list[str] = []
    max_words = 1
    for entry in entries:
        exact = entry.startswith(EXACT)
        shown = entry.removeprefix(EXACT).strip()
        folded = fold_for_matching(shown)
        tokens = _WORD.tokenize(folded)
        if not tokens:
            if folded.strip():
                fragments.append(folded.strip())
            continue
        joined = [_INNER.sub("", token) for token in tokens]
        pieces = [piece for token in tokens for piece in _INNER.split(token) if piece]
        for words in (joined, pieces):
            forms = [EXACT + w if exact else stemmer.stem(w) for w in words]
            keys.setdefault(" ".join(forms), shown)
            max_words = max(max_words, len(words))
    return _TermIndex(keys=keys, fragments=tuple(fragments), max_words=max_words)
