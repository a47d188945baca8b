"""Content policy: disguises are seen through, innocent words pass, the built-in line holds."""

from __future__ import annotations

import pytest

from fluxbot.prompts.policy import (
    REASON_BLOCKLIST,
    REASON_EXPLICIT,
    REASON_MINORS,
    REASON_NEVER,
    ContentPolicy,
    PolicyVerdict,
)

SERVER_BLOCKLIST = ("ass", "cunt", "donald trump", "=cum", "🍆")


@pytest.fixture(scope="module")
def strict() -> ContentPolicy:
    return ContentPolicy(SERVER_BLOCKLIST, strict=True)


@pytest.fixture(scope="module")
def nsfw() -> ContentPolicy:
    return ContentPolicy(SERVER_BLOCKLIST, strict=False)


@pytest.mark.parametrize(
    "prompt",
    [
        "a class photo of a glass of water",
        "Scunthorpe at dawn",
        "Essex, Sussex and Middlesex",
        "an assassin with a bass guitar in a passage",
        "chicken breast dinner",
        "Cumming, Georgia",
        "a data analysis chart",
        "a pen is on the table",
        "a rapeseed field and a bunch of grapes",
        "the therapist's office",
        "both sexes, a sextant",
        "no kidding, a minority report",
        "a child playing in a park",
        "a sexy vampire",
        "donald duck",
        "a red fox in a forest, 16:9, f/1.8",
    ],
)
def test_innocent_prompts_pass_in_a_strict_channel(strict: ContentPolicy, prompt: str) -> None:
    assert strict.check(prompt) == PolicyVerdict(allowed=True)


@pytest.mark.parametrize(
    "prompt",
    [
        "a nude portrait",
        "NUDE",
        "nudes",
        "n u d e",
        "a n u d e woman",
        "n.u.d.e",
        "n_u_d_e",
        "n-u-d-e",
        "n . u . d . e",
        "nuuuude",
        "nüde",
        "ｎｕｄｅ",
        "nu\u200bde",
        "nudе",  # Cyrillic e
        "nud3",
        "(nu)(de)",
        "p0rn",
        "s3x",
        "$ex",
        "sexxx",
        "n@ked",
    ],
)
def test_explicit_terms_are_caught_through_disguises(strict: ContentPolicy, prompt: str) -> None:
    verdict = strict.check(prompt)
    assert not verdict.allowed
    assert verdict.reason == REASON_EXPLICIT
    assert verdict.matched in ("nude", "nudes", "porn", "sex", "naked")


@pytest.mark.parametrize(
    ("prompt", "matched"),
    [
        ("a$$", "ass"),
        ("4ss", "ass"),
        ("a s s", "ass"),
        ("asssss", "ass"),
        ("asses", "ass"),
        ("c.u.n.t", "cunt"),
        ("Donald  Trump", "donald trump"),
        ("donald-trump", "donald trump"),
        ("d0nald trump", "donald trump"),
        ("cum", "cum"),
        ("c u m", "cum"),
        ("an 🍆 emoji", "🍆"),
    ],
)
def test_server_blocklist_entries_are_caught(
    strict: ContentPolicy, nsfw: ContentPolicy, prompt: str, matched: str
) -> None:
    for policy in (strict, nsfw):
        assert policy.check(prompt) == PolicyVerdict(False, REASON_BLOCKLIST, matched)


@pytest.mark.parametrize(
    "prompt", ["summa cum laude", "a cock crowing at dawn", "blue tits on a branch", "a wild ass"]
)
def test_built_in_lists_leave_out_ambiguous_words(prompt: str) -> None:
    assert ContentPolicy(strict=True).check(prompt).allowed


def test_strict_refuses_explicit_terms_and_nsfw_allows_them(
    strict: ContentPolicy, nsfw: ContentPolicy
) -> None:
    for prompt in ("a nude portrait", "an erotic painting", "two people having sex"):
        assert not strict.check(prompt).allowed
        assert nsfw.check(prompt).allowed


@pytest.mark.parametrize(
    "prompt",
    [
        "a kid, naked",
        "naked children",
        "a 12 year old, nude",
        "a twelve-year-old in lingerie",
        "16yo girl, nsfw",
        "aged 9, erotic",
        "a sexy teen",
        "a s3xy t33n",
        "schoolgirl, n u d e",
        "minors in lingerie",
    ],
)
def test_minors_with_sexual_terms_are_refused_everywhere(
    strict: ContentPolicy, nsfw: ContentPolicy, prompt: str
) -> None:
    for policy in (strict, nsfw, ContentPolicy(), ContentPolicy([], strict=False)):
        verdict = policy.check(prompt)
        assert not verdict.allowed
        assert verdict.reason == REASON_MINORS


@pytest.mark.parametrize(
    "prompt", ["child porn", "c h i l d porn", "p3d0", "jailbait", "a rape scene"]
)
def test_never_allowed_terms_are_refused_everywhere(nsfw: ContentPolicy, prompt: str) -> None:
    for policy in (nsfw, ContentPolicy([], strict=False)):
        assert policy.check(prompt).reason == REASON_NEVER


def test_adults_are_allowed_in_nsfw_channels(nsfw: ContentPolicy) -> None:
    assert nsfw.check("a 30 year old woman, nude").allowed
    assert nsfw.check("a nude woman, 25 years old").allowed


def test_the_built_in_list_cannot_be_turned_off() -> None:
    # No setting reaches it: an empty blocklist, a non-strict policy, even listing the words.
    for policy in (
        ContentPolicy([], strict=False),
        ContentPolicy(["something else"], strict=False),
        ContentPolicy.from_settings(_Settings(()), nsfw_channel=True),
    ):
        assert not policy.check("a kid, naked").allowed
        assert not policy.check("jailbait").allowed


def test_reasons_are_sentences_that_do_not_echo_the_prompt(strict: ContentPolicy) -> None:
    for prompt in ("a kid, naked", "jailbait", "a nude", "donald trump"):
        reason = strict.check(prompt).reason
        assert reason is not None and reason.endswith(".") and reason[0].isupper()
        assert prompt.split()[-1] not in reason.lower()


def test_negative_prompt_text_is_the_callers_to_skip(strict: ContentPolicy) -> None:
    # The policy checks what it is given; `--no nudity` must not be passed to it as a prompt.
    assert not strict.check("nudity").allowed


class _Settings:
    def __init__(self, blocklist: tuple[str, ...]) -> None:
        self.blocklist = blocklist


def test_policy_from_settings_and_per_channel() -> None:
    policy = ContentPolicy.from_settings(_Settings(("donald trump",)))
    assert policy.strict and policy.blocklist == ("donald trump",)
    relaxed = policy.for_channel(nsfw_channel=True)
    assert not relaxed.strict and relaxed.blocklist == policy.blocklist
    assert relaxed.check("a nude").allowed
    assert not relaxed.check("Donald Trump").allowed


def test_blank_blocklist_entries_are_ignored() -> None:
    policy = ContentPolicy(["", "  ", "ass"], strict=False)
    assert policy.blocklist == ("ass",)
    assert policy.check("a red fox").allowed


def test_policy_is_fast_on_a_long_prompt(strict: ContentPolicy) -> None:
    import time

    started = time.perf_counter()
    assert strict.check("a red fox in a forest with a river, " * 160).allowed
    assert time.perf_counter() - started < 2.0
