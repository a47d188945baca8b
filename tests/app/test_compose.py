"""RequestComposer: one path from what a user typed to a validated request."""

from __future__ import annotations

import pytest

from fluxbot.app.compose import RequestComposer, load_budget
from fluxbot.core.requests import ASPECT_PRESETS, AnimationSpec, RequestError, SizeLimits
from fluxbot.engine.tokenizers import build_clip_tokenizer
from fluxbot.prompts.budget import TokenBudget, tokenizer_counter
from fluxbot.prompts.policy import REASON_BLOCKLIST, REASON_EXPLICIT, ContentPolicy, PolicyRefused


@pytest.fixture(scope="module")
def composer() -> RequestComposer:
    return RequestComposer(
        SizeLimits(),
        load_budget("tiny-random"),
        strict=ContentPolicy(["dragon"], strict=True),
        relaxed=ContentPolicy(["dragon"], strict=False),
    )


def test_options_win_over_flags_and_weights_are_rendered_away(composer: RequestComposer) -> None:
    draft = composer.draft("(a red fox:1.3), forest --ar 16:9 --seed 5 --no blur", seed=9)
    request = draft.finish(draft.seed)
    assert request.seed == 9 and request.negative == "blur"
    assert (request.width, request.height) == ASPECT_PRESETS["16:9"]
    assert request.prompt == "a red fox, forest"


def test_user_defaults_fill_what_was_not_given(composer: RequestComposer) -> None:
    draft = composer.draft("a fox", default_aspect="3:4", default_steps=2)
    request = draft.finish(1)
    assert (request.width, request.height) == ASPECT_PRESETS["3:4"] and request.steps == 2
    assert draft.seed is None  # the seed profile decides


def test_too_long_prompts_drop_groups_and_say_so(composer: RequestComposer) -> None:
    tail = ", ".join(f"detail number {i}" for i in range(120))
    draft = composer.draft(f"a red fox, {tail}")
    assert draft.notices and "Left out" in draft.notices[0]
    assert draft.finish(1).prompt.startswith("a red fox")


def test_em_dash_flags_and_a_tight_budget_drop_the_least_weighted_group() -> None:
    count = tokenizer_counter(build_clip_tokenizer())
    budget = TokenBudget(count_t5=count, count_clip=count, t5_limit=count("red fox, forest"))
    policy = ContentPolicy()
    composer = RequestComposer(SizeLimits(), budget, strict=policy, relaxed=policy)
    draft = composer.draft("(red fox:1.3), [blurry], forest —ar 16:9 —seed 3 —no (dogs)", seed=11)
    request = draft.finish(draft.seed)
    assert (request.prompt, request.negative, request.seed) == ("red fox, forest", "dogs", 11)
    assert (request.width, request.height) == ASPECT_PRESETS["16:9"]
    assert len(draft.notices) == 1 and "blurry" in draft.notices[0]
    assert request.uses_true_cfg


def test_the_blocklist_and_strictness(composer: RequestComposer) -> None:
    with pytest.raises(PolicyRefused) as blocked:
        composer.draft("a d r a g o n")
    assert str(blocked.value) == REASON_BLOCKLIST
    with pytest.raises(PolicyRefused) as explicit:
        composer.draft("a n.u.d.e figure --ar 1:1", strict=True)
    assert str(explicit.value) == REASON_EXPLICIT
    assert composer.draft("a nude figure", strict=False).fields["prompt"] == "a nude figure"
    assert composer.draft("a fox --no nudity", strict=True).fields["negative"] == "nudity"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": "a fox", "width": 8000}, "width"),
        ({"prompt": "a fox", "steps": 20}, "steps"),
        ({"prompt": "a fox --count 9"}, "--count"),
        ({"prompt": "--seed 3"}, "prompt"),
        ({"prompt": "a fox", "seed": "-1"}, "seed"),
    ],
)
def test_bad_input_names_the_field(
    composer: RequestComposer, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(RequestError) as caught:
        composer.draft(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field_name == field


def test_animations_are_single_jobs(composer: RequestComposer) -> None:
    draft = composer.draft("clouds", animation=AnimationSpec(frames=4, seed_to=3))
    request = draft.finish(1)
    assert request.count == 1 and request.image_count == 4
