"""Prompt parts: normalise, read inline flags, check the content policy, fit the token budget.

The parts live in submodules (text, flags, groups, budget, policy); `RequestComposer.draft` in
fluxbot/app/compose.py is the one path that runs them in order for the bot and the CLI.
"""

from __future__ import annotations

from fluxbot.prompts.budget import (
    CLIP_TOKEN_LIMIT,
    T5_TOKEN_LIMIT,
    BudgetResult,
    TokenBudget,
    TokenCounter,
    fit_budget,
    tokenizer_counter,
    word_counter,
)
from fluxbot.prompts.flags import (
    KNOWN_FLAGS,
    ParsedPrompt,
    merge_options,
    parse_aspect,
    parse_count,
    parse_prompt,
    parse_steps,
)
from fluxbot.prompts.groups import (
    PromptGroup,
    parse_weights,
    render_groups,
    split_groups,
    strip_weights,
)
from fluxbot.prompts.policy import ContentPolicy, PolicyRefused, PolicyVerdict
from fluxbot.prompts.text import normalise_text

__all__ = [
    "CLIP_TOKEN_LIMIT",
    "KNOWN_FLAGS",
    "T5_TOKEN_LIMIT",
    "BudgetResult",
    "ContentPolicy",
    "ParsedPrompt",
    "PolicyRefused",
    "PolicyVerdict",
    "PromptGroup",
    "TokenBudget",
    "TokenCounter",
    "fit_budget",
    "merge_options",
    "normalise_text",
    "parse_aspect",
    "parse_count",
    "parse_prompt",
    "parse_steps",
    "parse_weights",
    "render_groups",
    "split_groups",
    "strip_weights",
    "tokenizer_counter",
    "word_counter",
]
