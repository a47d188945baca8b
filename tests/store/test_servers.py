"""Per-server tables: settings (validated, cached), scoped bans, usage with cooldown and quota."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from fluxbot.core.requests import RequestError
from fluxbot.engine.safety import SafetyVerdict
from fluxbot.store import GuildPolicy, SafetyPolicy, Store
from fluxbot.store.usage import CooldownActive, QuotaReached

from .helpers import encoded, make_request

A, B = 1000, 2000
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


async def test_settings_round_trip_and_survive_a_reopen(store: Store, db_url: str) -> None:
    assert await store.guilds.get(A) == GuildPolicy()
    policy = await store.guilds.update(
        A,
        {
            "allowed_channel_ids": [11, 12, 11],
            "required_role_id": 77,
            "cooldown_s": 30,
            "daily_quota": 5,
            "max_count": 2,
            "max_steps": 4,
            "private_default": True,
            "safety_policy": "withhold",
        },
        by=9,
    )
    assert policy.allowed_channel_ids == (11, 12)
    assert policy.safety_policy is SafetyPolicy.WITHHOLD
    assert await store.guilds.get(B) == GuildPolicy(), "another server keeps the defaults"
    reopened = await Store.open(db_url, store.data_dir)
    try:
        assert await reopened.guilds.get(A) == policy
    finally:
        await reopened.close()
    assert (await store.guilds.update(A, {"cooldown_s": 0})).max_count == 2
    assert await store.guilds.reset(A) == GuildPolicy()


@pytest.mark.parametrize(
    "bad",
    [
        {"max_steps": 1.5},
        {"max_steps": 0},
        {"max_count": 9},
        {"max_count": True},
        {"cooldown_s": -1},
        {"daily_quota": "3"},
        {"private_default": "yes"},
        {"safety_policy": "blur"},
        {"allowed_channel_ids": "123"},
        {"allowed_channel_ids": [1.5]},
        {"required_role_id": -4},
        {"colour": "red"},
    ],
)
async def test_bad_settings_are_refused_whole(store: Store, bad: dict[str, object]) -> None:
    before = await store.guilds.update(A, {"cooldown_s": 10})
    with pytest.raises(RequestError):
        await store.guilds.update(A, {"daily_quota": 3, **bad})
    assert await store.guilds.get(A) == before
    store.guilds._cache.clear()  # what is in the database, not only the cache
    assert await store.guilds.get(A) == before


async def test_bans_are_per_server_or_global(store: Store) -> None:
    assert await store.bans.ban(5, A, by=1)
    assert not await store.bans.ban(5, A), "already banned there"
    assert await store.bans.is_banned(5, A)
    assert not await store.bans.is_banned(5, B)
    assert not await store.bans.is_banned(5, None)
    await store.bans.ban(6, None)
    assert await store.bans.is_banned(6, A) and await store.bans.is_banned(6, None)
    assert not await store.bans.unban(6, A), "a server cannot lift a global ban"
    assert await store.bans.is_banned(6, A)
    assert await store.bans.unban(5, A)
    assert not await store.bans.is_banned(5, A)


async def test_forget_me_keeps_bans_and_drops_usage(store: Store) -> None:
    await store.bans.ban(5, A)
    await store.usage.claim(A, 5, now=T0)
    await store.delete_user(5)
    assert await store.bans.is_banned(5, A)
    assert (await store.usage.report(A, now=T0)).per_user == []


async def test_quota_counts_per_server_and_day(store: Store) -> None:
    claims = [await store.usage.claim(A, 5, daily_quota=3, now=T0) for _ in range(3)]
    assert [c.remaining for c in claims] == [2, 1, 0]
    assert "You can make 2 more today; resets <t:" in (claims[0].quota_note() or "")
    with pytest.raises(QuotaReached) as refused:
        await store.usage.claim(A, 5, daily_quota=3, now=T0)
    assert refused.value.until == datetime(2026, 12, 3, tzinfo=UTC)
    assert (await store.usage.claim(B, 5, daily_quota=3, now=T0)).remaining == 2
    next_day = await store.usage.claim(A, 5, daily_quota=3, now=T0 + timedelta(days=1))
    assert next_day.remaining == 2
    await store.usage.release(claims[-1])
    assert (await store.usage.claim(A, 5, daily_quota=3, now=T0)).remaining == 0


async def test_a_burst_cannot_slip_past_the_quota(store: Store) -> None:
    async def one() -> bool:
        try:
            await store.usage.claim(A, 5, daily_quota=4, now=T0)
            return True
        except QuotaReached:
            return False

    results = await asyncio.gather(*(one() for _ in range(12)))
    assert results.count(True) == 4


async def test_cooldown(store: Store) -> None:
    await store.usage.claim(A, 5, cooldown_s=60, now=T0)
    with pytest.raises(CooldownActive) as refused:
        await store.usage.claim(A, 5, cooldown_s=60, now=T0 + timedelta(seconds=59))
    assert refused.value.until == T0 + timedelta(seconds=60)
    await store.usage.claim(B, 5, cooldown_s=60, now=T0 + timedelta(seconds=1))
    await store.usage.claim(A, 5, cooldown_s=60, now=T0 + timedelta(seconds=60))


async def test_report_per_user_and_day(store: Store) -> None:
    await store.usage.claim(A, 5, now=T0)
    await store.usage.record_finish(A, 5, images=2, gpu_seconds=1.5, when=T0)
    await store.usage.claim(A, 6, now=T0 - timedelta(days=1))
    await store.usage.record_finish(A, 6, images=1, gpu_seconds=0.5, when=T0 - timedelta(days=1))
    await store.usage.record_finish(B, 7, images=4, gpu_seconds=9.0, when=T0)
    report = await store.usage.report(A, days=7, now=T0)
    assert [(u.user_id, u.images, u.gpu_seconds) for u in report.per_user] == [
        (5, 2, 1.5),
        (6, 1, 0.5),
    ]
    assert [(d.day, d.jobs, d.images) for d in report.per_day] == [
        ("2026-12-02", 1, 2),
        ("2026-12-01", 1, 1),
    ]
    everywhere = await store.usage.report(None, days=1, now=T0)
    assert {(u.guild_id, u.user_id) for u in everywhere.per_user} == {(A, 5), (B, 7)}


async def test_job_privacy_delivery_and_safety_are_stored(store: Store) -> None:
    from fluxbot.store import Origin

    job = await store.jobs.create(
        5, make_request(), origin=Origin(guild_id=A, private=True, age_restricted=True)
    )
    assert job.private and job.age_restricted and job.delivered_at is None
    verdict = SafetyVerdict(True, {"FEMALE_BREAST_EXPOSED": 0.91, "FACE_FEMALE": 0.4})
    image = encoded(1234)
    from dataclasses import replace

    done = await store.finish_job(job, [replace(image, safety=verdict)])
    assert done.images[0].safety_verdict == "flagged" and done.images[0].flagged
    assert done.images[0].safety_scores == {"FEMALE_BREAST_EXPOSED": 0.91, "FACE_FEMALE": 0.4}
    other = await store.jobs.create(6, make_request(), origin=Origin(guild_id=B))
    await store.finish_job(other, [replace(encoded(1), safety=SafetyVerdict(False, {}))])
    assert [j.public_id for j in await store.jobs.flagged(guild_id=A)] == [job.public_id]
    assert await store.jobs.flagged(guild_id=B) == []
    assert {j.public_id for j in await store.jobs.undelivered()} == {job.public_id, other.public_id}
    await store.jobs.mark_undelivered(job.id, "503: Service Unavailable")
    failed = await store.jobs.require(job.id)
    assert failed.delivery_attempts == 1 and failed.delivery_error
    await store.jobs.mark_delivered(job.id)
    assert [j.public_id for j in await store.jobs.undelivered()] == [other.public_id]


def test_the_stored_flag_is_the_verdicts_label() -> None:
    from fluxbot.engine.verdict import FLAGGED as VERDICT_FLAGGED
    from fluxbot.store.models import FLAGGED

    assert FLAGGED == VERDICT_FLAGGED == SafetyVerdict(True).label
