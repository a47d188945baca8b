"""The permission model as a table: every decision x every kind of actor, in and out of place."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fluxbot.app.permissions import (
    EVERYWHERE,
    Actor,
    Decision,
    PermissionDenied,
    Scope,
    can_ban,
    can_cancel_job,
    can_control_bot,
    can_manage_guild,
    can_show_job,
    can_view_job,
    exempt_from_limits,
    history_scope,
    queue_scope,
    require,
)

A, B = 100, 200
OWNER = Actor(1, owner=True, guild_id=B)
MANAGER_IN_A = Actor(2, guild_id=A, manager=True)
MANAGER_A_IN_B = Actor(2, guild_id=B, manager=False)  # the same person, acting in server B
MEMBER = Actor(3, guild_id=A)
AUTHOR = Actor(4, guild_id=B)  # the author of the jobs below, acting from another server


@dataclass
class FakeJob:
    user_id: int
    guild_id: int | None
    private: bool = False
    age_restricted: bool = False


PUBLIC_A = FakeJob(4, A)
PRIVATE_A = FakeJob(4, A, private=True)
NSFW_A = FakeJob(4, A, age_restricted=True)

ACTORS = {
    "owner": OWNER,
    "manager A in A": MANAGER_IN_A,
    "manager A in B": MANAGER_A_IN_B,
    "member": MEMBER,
    "author": AUTHOR,
}

# decision -> the actors it allows (every other actor is refused)
TABLE: list[tuple[str, object, set[str]]] = [
    ("control the bot", can_control_bot, {"owner"}),
    ("manage server A", lambda a: can_manage_guild(a, A), {"owner", "manager A in A"}),
    ("manage server B", lambda a: can_manage_guild(a, B), {"owner"}),
    ("manage no server (DM)", lambda a: can_manage_guild(a, None), set()),
    ("ban in A", lambda a: can_ban(a, A), {"owner", "manager A in A"}),
    ("ban everywhere", lambda a: can_ban(a, None), {"owner"}),
    (
        "cancel a job of A",
        lambda a: can_cancel_job(a, PUBLIC_A),
        {"owner", "manager A in A", "author"},
    ),
    ("view a public job", lambda a: can_view_job(a, PUBLIC_A), set(ACTORS)),
    (
        "view a private job of A",
        lambda a: can_view_job(a, PRIVATE_A),
        {"owner", "manager A in A", "author"},
    ),
    (
        "show a private job in a plain channel",
        lambda a: can_show_job(a, PRIVATE_A, age_restricted_channel=False),
        {"owner", "manager A in A", "author"},
    ),
    (
        "show an age-restricted job in a plain channel",
        lambda a: can_show_job(a, NSFW_A, age_restricted_channel=False),
        set(),
    ),
    (
        "show an age-restricted job in an age-restricted channel",
        lambda a: can_show_job(a, NSFW_A, age_restricted_channel=True),
        set(ACTORS),
    ),
]


@pytest.mark.parametrize(
    ("what", "decide", "actor_name"),
    [(what, decide, name) for what, decide, _ in TABLE for name in ACTORS],
    ids=[f"{what}-{name}" for what, _, _ in TABLE for name in ACTORS],
)
def test_decision_table(what: str, decide: object, actor_name: str) -> None:
    allowed = next(allowed for w, _, allowed in TABLE if w == what)
    decision = decide(ACTORS[actor_name])  # type: ignore[operator]
    assert isinstance(decision, Decision)
    assert decision.allowed == (actor_name in allowed), (what, actor_name)
    if not decision.allowed:
        assert decision.reason, "a refusal says why"


@pytest.mark.parametrize(
    ("actor_name", "expected"),
    [
        ("owner", EVERYWHERE),
        ("manager A in A", Scope(A)),
        ("manager A in B", None),
        ("member", None),
    ],
)
def test_queue_scope(actor_name: str, expected: Scope | None) -> None:
    scope = queue_scope(ACTORS[actor_name])
    if expected is None:
        assert isinstance(scope, Decision) and not scope
    else:
        assert scope == expected


def test_history_scope() -> None:
    assert history_scope(MEMBER, MEMBER.user_id) == EVERYWHERE
    assert history_scope(OWNER, MEMBER.user_id) == EVERYWHERE
    assert history_scope(MANAGER_IN_A, MEMBER.user_id) == Scope(A)
    refused = history_scope(MANAGER_A_IN_B, MEMBER.user_id)
    assert isinstance(refused, Decision) and not refused
    refused = history_scope(MEMBER, AUTHOR.user_id)
    assert isinstance(refused, Decision) and not refused


def test_require_raises_with_the_reason() -> None:
    require(can_control_bot(OWNER))
    with pytest.raises(PermissionDenied, match="owners"):
        require(can_control_bot(MANAGER_IN_A))


@pytest.mark.parametrize(
    ("verdict", "policy", "nsfw", "expected"),
    [
        ("flagged", "spoiler", False, "spoiler"),
        ("flagged", "withhold", False, "withhold"),
        ("flagged", "off", False, "show"),
        ("flagged", "withhold", True, "show"),
        ("flagged", "spoiler", True, "show"),
        ("safe", "withhold", False, "show"),
        (None, "withhold", False, "show"),
    ],
)
def test_image_routing(verdict: str | None, policy: str, nsfw: bool, expected: str) -> None:
    from fluxbot.app.image_routing import route_image
    from fluxbot.store.guilds import SafetyPolicy

    assert route_image(verdict, SafetyPolicy(policy), age_restricted_channel=nsfw) == expected


def test_cooldowns_and_quotas_spare_owners_everywhere_and_managers_in_their_server() -> None:
    assert exempt_from_limits(OWNER, A) and exempt_from_limits(OWNER, B)
    assert exempt_from_limits(OWNER, None)
    assert exempt_from_limits(MANAGER_IN_A, A)
    assert not exempt_from_limits(MANAGER_IN_A, B)
    assert not exempt_from_limits(MANAGER_A_IN_B, B)
    assert not exempt_from_limits(MEMBER, A)
