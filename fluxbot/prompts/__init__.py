"""Prompt manager: normalise, read inline flags, check the content policy, fit the token budget.

The parts live in submodules (text, flags, groups, budget, policy); `prepare_prompt` runs them
in order for a command: flags and options first, then the policy on the prompt the encoders will
see, then the budget when the pipeline's token counters are at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from fluxbot.prompts.policy import ContentPolicy, PolicyVerdict
from fluxbot.prompts.text import normalise_text

__all__ = [
    "CLIP_TOKEN_LIMIT",
    "KNOWN_FLAGS",
    "T5_TOKEN_LIMIT",
    "BudgetResult",
    "ContentPolicy",
    "ParsedPrompt",
    "PolicyVerdict",
    "PreparedPrompt",
    "PromptBlocked",
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
    "prepare_prompt",
    "render_groups",
    "split_groups",
    "strip_weights",
    "tokenizer_counter",
    "word_counter",
]


class PromptBlocked(ValueError):
    """The content policy refused a prompt; `str()` is the verdict's sentence for the user."""

    def __init__(self, verdict: PolicyVerdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.reason or "This prompt is not allowed here.")


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A prompt ready for a `GenerationRequest`: plain texts to encode, flag and option values,
    and what the budget left out (None when no budget was given)."""

    parsed: ParsedPrompt
    prompt: str
    negative: str
    budget: BudgetResult | None = None
    negative_budget: BudgetResult | None = None

    @property
    def notices(self) -> list[str]:
        """Sentences to show the user about parts of their prompts that were left out."""
        results = (self.budget, self.negative_budget)
        return [r.notice for r in results if r is not None and r.notice is not None]


def prepare_prompt(
    raw: str,
    *,
    policy: ContentPolicy,
    budget: TokenBudget | None = None,
    **options: Any,
) -> PreparedPrompt:
    """Parse flags, lay slash `options` over them, check `policy`, then fit `budget`.

    Raises `RequestError` for bad flags or options and `PromptBlocked` for a refused prompt.
    """
    parsed = merge_options(parse_prompt(raw), **options)
    verdict = policy.check(parsed.text)
    if not verdict.allowed:
        raise PromptBlocked(verdict)
    negative_text = parsed.negative or ""
    if budget is None:
        return PreparedPrompt(parsed, strip_weights(parsed.text), strip_weights(negative_text))
    fitted = budget.fit(parsed.text)
    fitted_negative = budget.fit(negative_text) if negative_text else None
    return PreparedPrompt(
        parsed=parsed,
        prompt=fitted.prompt,
        negative=fitted_negative.prompt if fitted_negative else "",
        budget=fitted,
        negative_budget=fitted_negative,
    )
