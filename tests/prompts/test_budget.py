"""Token budget: groups dropped lowest weight first, then latest; the first group last."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from fluxbot.prompts.budget import (
    BudgetResult,
    TokenBudget,
    fit_budget,
    tokenizer_counter,
    word_counter,
)

PROMPT = "red fox, (forest:1.5), [blurry], river, mountain"


@pytest.fixture
def count(clip_tokenizer: CLIPTokenizer):  # type: ignore[no-untyped-def]
    return tokenizer_counter(clip_tokenizer)


def test_counter_includes_bos_and_eos(count) -> None:  # type: ignore[no-untyped-def]
    assert count("red fox") == 4
    assert count("red fox, forest") == 6
    assert count("zebra") > 3  # an unknown word splits into pieces


def test_a_prompt_that_fits_is_only_stripped_of_weights(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget(PROMPT, count, count)
    assert result == BudgetResult(
        prompt="red fox, forest, blurry, river, mountain",
        dropped=[],
        clip_tokens=12,
        t5_tokens=12,
    )
    assert result.notice is None
    assert not result.clip_truncated and not result.t5_truncated


@pytest.mark.parametrize(
    ("kept", "dropped"),
    [
        ("red fox, forest, river, mountain", ["blurry"]),  # lowest weight goes first
        ("red fox, forest, river", ["blurry", "mountain"]),  # then the latest of equal weight
        ("red fox, forest", ["blurry", "river", "mountain"]),
    ],
)
def test_groups_are_dropped_lowest_weight_then_latest(count, kept: str, dropped: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget(PROMPT, count, t5_limit=count(kept))
    assert result.prompt == kept
    assert result.dropped == dropped
    assert result.t5_tokens == count(kept)
    assert not result.t5_truncated


def test_one_token_short_drops_one_more_group(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget(PROMPT, count, t5_limit=count("red fox, forest, river, mountain") - 1)
    assert result.prompt == "red fox, forest, river"


def test_the_first_group_is_dropped_last_even_with_the_lowest_weight(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget("[red fox], forest, river", count, t5_limit=count("red fox, forest"))
    assert result.prompt == "red fox, forest"
    assert result.dropped == ["river"]


def test_when_only_the_first_group_is_left_the_cut_is_reported(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget("a very long group of many words here, (forest:2)", count, t5_limit=5)
    assert result.prompt == "a very long group of many words here"
    assert result.dropped == ["forest"]
    assert result.t5_truncated
    assert result.notice is not None and "cut" in result.notice


def test_short_groups_dropped_early_come_back_when_there_is_room(count) -> None:  # type: ignore[no-untyped-def]
    prompt = "red fox, a very long group of many words here, [tiny]"
    result = fit_budget(prompt, count, t5_limit=count("red fox, tiny"))
    assert result.prompt == "red fox, tiny"
    assert result.dropped == ["a very long group of many words here"]


def test_dropping_keeps_sentences_readable(count) -> None:  # type: ignore[no-untyped-def]
    prompt = "red fox, [forest]. It is night."
    result = fit_budget(prompt, count, t5_limit=count("red fox. It is night."))
    assert result.prompt == "red fox. It is night."
    assert result.dropped == ["forest"]


def test_clip_is_a_soft_limit_only_reported(count) -> None:  # type: ignore[no-untyped-def]
    long_prompt = ", ".join(["red fox", "forest", "river", "mountain"] * 12)
    result = fit_budget(long_prompt, count, count)
    assert result.dropped == []
    assert result.clip_tokens is not None and result.clip_tokens > 77
    assert result.clip_truncated
    assert not result.t5_truncated


def test_without_a_clip_counter_clip_is_not_counted(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget("red fox", count)
    assert result.clip_tokens is None and not result.clip_truncated


def test_the_real_t5_limit_is_256(count) -> None:  # type: ignore[no-untyped-def]
    prompt = "red fox, (forest:1.2), [mountain], " + ", ".join(["river"] * 150)
    result = fit_budget(prompt, count)
    # 6 tokens for BOS, `red fox, forest` and EOS, then 2 for each `, river`: 125 rivers fit.
    assert (result.t5_limit, result.t5_tokens) == (256, 256)
    assert result.prompt == "red fox, forest, " + ", ".join(["river"] * 125)
    assert result.dropped == ["mountain"] + ["river"] * 25


def test_notice_names_what_was_left_out(count) -> None:  # type: ignore[no-untyped-def]
    result = fit_budget(PROMPT, count, t5_limit=count("red fox, forest, river"))
    assert result.notice is not None
    assert "blurry" in result.notice and "mountain" in result.notice
    assert "256" not in result.notice and str(result.t5_limit) in result.notice


def test_token_budget_is_fit_budget_with_its_counters(count) -> None:  # type: ignore[no-untyped-def]
    budget = TokenBudget(count_t5=count, count_clip=count, t5_limit=10)
    assert budget.fit(PROMPT) == fit_budget(PROMPT, count, count, t5_limit=10)


def test_word_counter_is_a_rough_fallback() -> None:
    assert word_counter()("red fox, forest") == 6
    assert word_counter(special_tokens=1)("red fox") == 3
