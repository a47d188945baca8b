"""prepare_prompt: flags, options, policy and budget in the order a command needs them."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from fluxbot.core.requests import GenerationRequest, RequestError
from fluxbot.prompts import (
    ContentPolicy,
    PromptBlocked,
    TokenBudget,
    prepare_prompt,
    tokenizer_counter,
)
from fluxbot.prompts.policy import REASON_EXPLICIT


def test_flags_options_and_weights(clip_tokenizer: CLIPTokenizer) -> None:
    count = tokenizer_counter(clip_tokenizer)
    prepared = prepare_prompt(
        "(red fox:1.3), [blurry], forest —ar 16:9 —seed 3 —no (dogs)",
        policy=ContentPolicy(),
        budget=TokenBudget(count_t5=count, count_clip=count, t5_limit=count("red fox, forest")),
        seed=11,
    )
    assert prepared.prompt == "red fox, forest"
    assert prepared.negative == "dogs"
    assert (prepared.parsed.seed, prepared.parsed.aspect) == (11, "16:9")
    assert prepared.budget is not None and prepared.budget.dropped == ["blurry"]
    assert len(prepared.notices) == 1 and "blurry" in prepared.notices[0]
    request = GenerationRequest(
        prompt=prepared.prompt, negative=prepared.negative, seed=prepared.parsed.seed or 0
    )
    assert request.uses_true_cfg


def test_without_a_budget_weights_are_still_stripped() -> None:
    prepared = prepare_prompt("(red fox:1.3), forest", policy=ContentPolicy())
    assert (prepared.prompt, prepared.negative, prepared.budget) == ("red fox, forest", "", None)
    assert prepared.notices == []


def test_a_refused_prompt_raises_with_the_reason() -> None:
    with pytest.raises(PromptBlocked) as caught:
        prepare_prompt("a n.u.d.e portrait --ar 1:1", policy=ContentPolicy(strict=True))
    assert str(caught.value) == REASON_EXPLICIT
    assert caught.value.verdict.matched == "nude"


def test_the_negative_prompt_is_not_policed() -> None:
    prepared = prepare_prompt("a portrait --no nudity", policy=ContentPolicy(strict=True))
    assert prepared.negative == "nudity"


def test_bad_options_raise_request_error() -> None:
    with pytest.raises(RequestError, match="seed"):
        prepare_prompt("a fox", policy=ContentPolicy(), seed="-1")
