"""From what a user typed to a validated GenerationRequest: one path for the CLI and the bot.

Order: inline flags, then options over them, the content policy, the size (aspect preset or
explicit), the token budget, the operator's limits. The seed comes last because it may come from
the user's stored seed profile (`Draft.finish(seed)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fluxbot.core.requests import (
    ASPECT_PRESETS,
    AnimationSpec,
    GenerationRequest,
    RequestError,
    SizeLimits,
)
from fluxbot.core.styles import Style
from fluxbot.engine.tokenizers import build_clip_tokenizer, build_t5_tokenizer
from fluxbot.prompts.budget import TokenBudget, tokenizer_counter, word_counter
from fluxbot.prompts.flags import merge_options, parse_prompt
from fluxbot.prompts.policy import PolicyRefused

DEFAULT_ASPECT = "1:1"
DEFAULT_STEPS = 4


class Policy(Protocol):
    def check(self, prompt: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Draft:
    """A checked request still waiting for its seed (explicit, or from the seed profile)."""

    fields: dict[str, Any]
    seed: int | None
    notices: tuple[str, ...] = ()
    limits: SizeLimits = field(default_factory=SizeLimits)

    def finish(self, seed: int) -> GenerationRequest:
        return GenerationRequest(seed=seed, **self.fields).check_limits(self.limits)


def load_budget(model: str) -> TokenBudget:
    """Token counters from the model's own tokenizers (loaded apart from the GPU replicas)."""
    if model == "tiny-random":
        return TokenBudget(
            count_t5=tokenizer_counter(build_t5_tokenizer()),
            count_clip=tokenizer_counter(build_clip_tokenizer()),
        )
    try:
        from transformers import AutoTokenizer

        t5 = AutoTokenizer.from_pretrained(model, subfolder="tokenizer_2")
        clip = AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
    except (OSError, ValueError):
        return TokenBudget(count_t5=word_counter(), count_clip=word_counter())
    return TokenBudget(count_t5=tokenizer_counter(t5), count_clip=tokenizer_counter(clip))


class RequestComposer:
    """Builds drafts under one operator's limits, budget and content policy."""

    def __init__(
        self, limits: SizeLimits, budget: TokenBudget, strict: Policy, relaxed: Policy
    ) -> None:
        self.limits = limits
        self.budget = budget
        self._policies = {True: strict, False: relaxed}

    def draft(
        self,
        prompt: str,
        *,
        negative: str | None = None,
        aspect: str | None = None,
        seed: int | str | None = None,
        steps: int | str | None = None,
        count: int | str | None = None,
        width: int | None = None,
        height: int | None = None,
        default_aspect: str | None = None,
        default_steps: int | None = None,
        animation: AnimationSpec | None = None,
        strict: bool = True,
        style: Style | None = None,
    ) -> Draft:
        """Parse and check everything but the seed; raises RequestError (or PolicyRefused).

        A `style` wraps the user's text in its template and trigger words (after the policy
        check, which judges what the user wrote), gives its negative when the user gave none,
        and brings its LoRA.
        """
        try:
            options = merge_options(
                parse_prompt(prompt),
                negative=negative,
                seed=seed,
                aspect=aspect,
                steps=steps,
                count=count,
            )
        except RequestError as exc:
            if exc.field_name.lstrip("-") != "steps":
                raise
            # One limit and one sentence for steps: the operator's, not the parser's 1 to 50.
            raise RequestError(exc.field_name, exc.value, self.limits.steps_allowed) from None
        # The negative prompt says what to keep out, so it is not held to the policy.
        self._check_policy(options.text, strict)
        preset = options.aspect or default_aspect or DEFAULT_ASPECT
        if preset not in ASPECT_PRESETS:
            raise RequestError("aspect", preset, f"one of {', '.join(ASPECT_PRESETS)}")
        size_w, size_h = ASPECT_PRESETS[preset]
        text, negative = options.text, options.negative
        if style is not None:
            text, negative = style.apply(text), style.negative_for(negative)
        fitted = self.budget.fit(text)
        notices = (fitted.notice,) if fitted.notice else ()
        fields: dict[str, Any] = {
            "prompt": fitted.prompt,
            "negative": self.budget.fit(negative).prompt if negative else "",
            "width": width if width is not None else size_w,
            "height": height if height is not None else size_h,
            "steps": options.steps or default_steps or DEFAULT_STEPS,
            "count": 1 if animation else (options.count or 1),
            "animation": animation,
            "style": style.name if style else "",
            "lora": style.lora if style else None,
        }
        draft = Draft(fields, options.seed, notices, self.limits)
        # Validate the rest now (with a stand-in seed) so bad input is refused before any work.
        draft.finish(options.seed if options.seed is not None else 0)
        return draft

    def _check_policy(self, text: str, strict: bool) -> None:
        """`strict` everywhere but channels marked NSFW; the never-allowed list applies in both."""
        verdict = self._policies[strict].check(text)
        if not verdict.allowed:
            raise PolicyRefused(verdict.reason or "This prompt is not allowed here.")
