"""UserRepo: preferences (validated), seed claiming and seed history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fluxbot.core.requests import RequestError
from fluxbot.store import Store, User

from .helpers import make_request

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def test_new_users_get_defaults(store: Store) -> None:
    assert await store.users.get(5) is None
    user = await store.users.get_or_create(5)
    assert (user.seed_profile, user.default_aspect, user.default_steps) == ("random", "1:1", 4)
    assert not user.private_results and user.last_seed is None
    assert user.created_at.tzinfo is not None


async def test_settings_change_only_what_is_given(store: Store) -> None:
    await store.users.update_settings(5, seed_profile="fixed:42", default_steps=6)
    user = await store.users.update_settings(5, private_results=True)
    assert (user.seed_profile, user.default_steps, user.private_results) == ("fixed:42", 6, True)
    assert user.default_aspect == "1:1"
    stored = await store.users.get(5)
    assert stored is not None and stored.seed_profile == "fixed:42" and stored.private_results


@pytest.mark.parametrize(
    "bad",
    [
        {"default_steps": 1.5},
        {"default_steps": True},
        {"default_steps": "4"},
        {"default_steps": 0},
        {"default_steps": 51},
        {"default_aspect": "5:4"},
        {"default_aspect": 16},
        {"private_results": "yes"},
        {"private_results": 1},
        {"seed_profile": "sometimes"},
        {"seed_profile": 42},
    ],
)
async def test_bad_preferences_are_refused_and_nothing_is_stored(
    store: Store, bad: dict[str, object]
) -> None:
    """A malformed /settings call (steps 1.5 sent as a number) must never reach the row."""
    await store.users.update_settings(5, default_steps=6, private_results=True)
    with pytest.raises(RequestError):
        changes = {"default_aspect": "16:9", **bad}
        await store.users.update_settings(5, **changes)  # type: ignore[arg-type]
    user = await store.users.get(5)
    assert user is not None
    assert (user.default_steps, user.default_aspect, user.private_results) == (6, "1:1", True)


async def test_concurrent_increment_claims_never_repeat_a_seed(store: Store) -> None:
    def increment(user: User) -> int:
        return 0 if user.last_seed is None else user.last_seed + 1

    seeds = await asyncio.gather(*(store.users.claim_seed(5, increment) for _ in range(20)))
    assert sorted(seeds) == list(range(20))


async def test_jobs_record_seed_history_and_last_seed(store: Store) -> None:
    first = await store.jobs.create(5, make_request(seed=100), now=T0)
    second = await store.jobs.create(5, make_request(seed=200, count=3), now=T0 + timedelta(1))
    await store.jobs.create(6, make_request(seed=300), now=T0)
    records = await store.users.recent_seeds(5)
    assert [(r.seed, r.job_public_id) for r in records] == [
        (200, second.public_id),
        (100, first.public_id),
    ]
    assert records[0].used_at == T0 + timedelta(1)
    user = await store.users.get(5)
    assert user is not None and user.last_seed == 202  # the seed of the batch's last image
    assert len(await store.users.recent_seeds(5, limit=1)) == 1
