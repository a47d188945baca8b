"""UserRepo: preferences, bans, seed claiming and seed history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fluxbot.store import Store, User

from .helpers import make_request

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def test_new_users_get_defaults(store: Store) -> None:
    assert await store.users.get(5) is None
    user = await store.users.get_or_create(5)
    assert (user.seed_profile, user.default_aspect, user.default_steps) == ("random", "1:1", 4)
    assert not user.private_results and not user.banned and user.last_seed is None
    assert user.created_at.tzinfo is not None


async def test_settings_change_only_what_is_given(store: Store) -> None:
    await store.users.update_settings(5, seed_profile="fixed:42", default_steps=6)
    user = await store.users.update_settings(5, private_results=True)
    assert (user.seed_profile, user.default_steps, user.private_results) == ("fixed:42", 6, True)
    assert user.default_aspect == "1:1"
    stored = await store.users.get(5)
    assert stored is not None and stored.seed_profile == "fixed:42" and stored.private_results


async def test_ban_and_unban(store: Store) -> None:
    assert not await store.users.is_banned(5)
    await store.users.set_banned(5, True)
    assert await store.users.is_banned(5)
    await store.users.set_banned(5, False)
    assert not await store.users.is_banned(5)


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
