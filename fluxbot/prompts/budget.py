"""Fitting a prompt into FLUX's text-encoder budgets by dropping its least important groups.

FLUX.1-schnell reads the prompt twice: T5-XXL, whose 256 tokens (EOS included) are all it
conditions on, and CLIP, of which it uses only the pooled output of the first 77 tokens (BOS and
EOS included). Past 256 T5 tokens the encoder silently cuts the tail, so fluxbot drops whole
groups instead, lowest weight first, then the latest; the first group (usually the subject) is
dropped last. CLIP's limit is soft: cutting its input is harmless, so it is only reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fluxbot.core.requests import SCHNELL_SEQUENCE_LENGTH
from fluxbot.prompts.groups import PromptGroup, render_groups, split_groups

TokenCounter = Callable[[str], int]
"""Tokens an encoder sees for a text, its special tokens (BOS/EOS) included."""

CLIP_TOKEN_LIMIT = 77
T5_TOKEN_LIMIT = SCHNELL_SEQUENCE_LENGTH

_WORDS_AND_MARKS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """The prompt to encode, the groups left out (in prompt order) and the token counts.

    `clip_tokens` is None when no CLIP counter was given.
    """

    prompt: str
    dropped: list[str]
    clip_tokens: int | None
    t5_tokens: int
    clip_limit: int = CLIP_TOKEN_LIMIT
    t5_limit: int = T5_TOKEN_LIMIT

    @property
    def clip_truncated(self) -> bool:
        """CLIP sees only the start of the prompt (harmless: FLUX uses its pooled output)."""
        return self.clip_tokens is not None and self.clip_tokens > self.clip_limit

    @property
    def t5_truncated(self) -> bool:
        """Even the first group alone is over the T5 limit, so the encoder cuts its tail."""
        return self.t5_tokens > self.t5_limit

    @property
    def notice(self) -> str | None:
        """A sentence telling the user what was left out, or None when nothing was."""
        if not self.dropped and not self.t5_truncated:
            return None
        parts = []
        if self.dropped:
            shown = "; ".join(_shorten(text) for text in self.dropped)
            parts.append(f"Left out to fit the {self.t5_limit}-token prompt limit: {shown}.")
        if self.t5_truncated:
            parts.append(
                f"The prompt is still too long, so its end past {self.t5_limit} tokens was cut."
            )
        return " ".join(parts)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fit_budget(
    text: str,
    count_t5: TokenCounter,
    count_clip: TokenCounter | None = None,
    *,
    t5_limit: int = T5_TOKEN_LIMIT,
    clip_limit: int = CLIP_TOKEN_LIMIT,
) -> BudgetResult:
    """Render `text` without weight syntax, dropping groups until it fits `t5_limit` tokens.

    Groups go lowest weight first, then latest first; the first group is never dropped. After
    the cut, dropped groups that fit again (short ones dropped early) are put back, most
    important first, so no room is wasted.
    """
    groups = split_groups(text)
    dropped: set[int] = set()
    prompt = render_groups(groups)
    tokens = count_t5(prompt)
    sequence: list[PromptGroup] = []
    for group in _drop_order(groups):
        if tokens <= t5_limit:
            break
        dropped.add(group.index)
        sequence.append(group)
        prompt = render_groups(groups, dropped)
        tokens = count_t5(prompt)
    for group in reversed(sequence):
        trial = dropped - {group.index}
        trial_prompt = render_groups(groups, trial)
        trial_tokens = count_t5(trial_prompt)
        if trial_tokens <= t5_limit:
            dropped, prompt, tokens = trial, trial_prompt, trial_tokens
    return BudgetResult(
        prompt=prompt,
        dropped=[g.text for g in groups if g.index in dropped],
        clip_tokens=count_clip(prompt) if count_clip else None,
        t5_tokens=tokens,
        clip_limit=clip_limit,
        t5_limit=t5_limit,
    )


def _drop_order(groups: list[PromptGroup]) -> list[PromptGroup]:
    """Every group but the first, lowest weight first and, among equals, latest first."""
    return sorted(groups[1:], key=lambda g: (g.weight, -g.index))


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """The budgets of one loaded pipeline: its tokenizers' counters and limits."""

    count_t5: TokenCounter
    count_clip: TokenCounter | None = None
    t5_limit: int = T5_TOKEN_LIMIT
    clip_limit: int = CLIP_TOKEN_LIMIT

    def fit(self, text: str) -> BudgetResult:
        return fit_budget(
            text,
            self.count_t5,
            self.count_clip,
            t5_limit=self.t5_limit,
            clip_limit=self.clip_limit,
        )


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A counter backed by a Hugging Face tokenizer (the pipeline's `tokenizer_2` for T5).

    Counting over-long texts is the point, so the tokenizer's length warning is silenced.
    """

    def count(text: str) -> int:
        encoded = tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    return count


def word_counter(special_tokens: int = 2) -> TokenCounter:
    """A rough counter (words and punctuation marks, plus special tokens) for when no tokenizer
    is loaded; real tokenizers split rare words further, so it undercounts."""

    def count(text: str) -> int:
        return len(_WORDS_AND_MARKS.findall(text)) + special_tokens

    return count
