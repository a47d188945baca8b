"""Unicode and whitespace normalisation of what people paste into Discord.

Discord clients and phone keyboards rewrite text: `--` becomes an em dash, quotes turn curly,
zero-width characters ride along from copy-paste. Everything downstream (flags, grouping,
policy) works on the normalised text, so these rewrites cannot change what a prompt means.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

# Dashes a keyboard or client may put where the user typed '-' or '--'.
LONG_DASHES = "\u2012\u2013\u2014\u2015\u2e3a\u2e3b\ufe58"
SHORT_DASHES = "\u2010\u2011\u2212\ufe63\uff0d"

QUOTES: dict[str, str] = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
}

_QUOTE_TABLE = str.maketrans(QUOTES)
_ANY_DASH = f"[-{LONG_DASHES}{SHORT_DASHES}]"
_LINE_BREAK = re.compile(r"[ \t]*[\r\n\u2028\u2029\x0b\x0c\x85]+\s*")
_SPACES = re.compile(r"\s+")
_SEPARATOR_END = re.compile(r"[,.;:!?]$")


def normalise_text(text: str, flag_names: Collection[str] = ()) -> str:
    """NFKC, plain quotes and dashes, no invisible characters, single spaces.

    A run of dashes holding a long dash, at the start of a word and directly before one of
    `flag_names`, becomes `--` (so `—ar 16:9` works as `--ar 16:9`); other long dashes become `-`.
    Line breaks become comma separators, since people list prompt parts one per line.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_QUOTE_TABLE)
    text = _drop_invisible(text)
    text = _restore_flag_dashes(text, flag_names)
    text = re.sub(f"[{LONG_DASHES}{SHORT_DASHES}]", "-", text)
    text = _LINE_BREAK.sub(_line_break_separator, text.strip())
    return _SPACES.sub(" ", text).strip()


def _drop_invisible(text: str) -> str:
    """Remove format and control characters (zero-width spaces, bidi marks, soft hyphens).

    Tabs and line breaks are kept as whitespace; everything else invisible is deleted so that
    `nu\u200bde` reads as one word to the policy and `-\u200b-ar` as a flag.
    """
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "\t\n\r\x0b\x0c\x85\u2028\u2029":
            kept.append(char)
        elif category in ("Cc", "Cf") or char == "\u00ad":
            continue
        else:
            kept.append(char)
    return "".join(kept)


def _restore_flag_dashes(text: str, flag_names: Collection[str]) -> str:
    if not flag_names:
        return text
    names = "|".join(sorted((re.escape(n) for n in flag_names), key=len, reverse=True))
    pattern = re.compile(
        rf"(?<!\S){_ANY_DASH}*[{LONG_DASHES}]{_ANY_DASH}*(?=(?:{names})(?![\w-]))",
        re.IGNORECASE,
    )
    return pattern.sub("--", text)


def _line_break_separator(match: re.Match[str]) -> str:
    before = match.string[: match.start()].rstrip()
    if not before or _SEPARATOR_END.search(before):
        return " "
    return ", "
