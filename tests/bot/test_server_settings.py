"""/server settings: stored, shown back, and applied before a job is queued (with a clear
ephemeral refusal), per server."""

from __future__ import annotations

from sqlalchemy import func, select

from fluxbot.store.models import JobRow
from tests.bot.conftest import BotHarness, answer, imagine_queued, results, two_servers, wait_for


async def jobs_of(harness: BotHarness, user_id: int) -> int:
    assert harness.bot is not None
    async with harness.bot.store.db.read() as session:
        query = select(func.count()).select_from(JobRow).where(JobRow.user_id == user_id)
        return int(await session.scalar(query) or 0)


def said(record, text: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether the bot ever told the user `text` about this command (the status line is edited
    as the job moves; the quota note is a message of its own)."""
    return any(text in str(r.get("content")) for m in record.messages for r in m.revisions)


async def refused(harness: BotHarness, user, options, channel, expected: str) -> None:  # type: ignore[no-untyped-def]
    before = await jobs_of(harness, user.id)
    record = await answer(harness.server, user, "imagine", options, channel=channel)
    text = " ".join(m.content for m in record.messages)
    assert expected in text, text
    assert record.messages[-1].ephemeral, "refusals are ephemeral"
    assert await jobs_of(harness, user.id) == before, "a refused command queued a job"


async def test_settings_round_trip_and_enforcement(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    server = w.server
    # The role required to generate: the member and the manager have it, the author has not.
    artists = server.state.add_role(w.guild_a, "Artists", 0)
    for user in (w.member, w.manager):
        w.guild_a.members[user.id].role_ids.append(artists.id)
    bot = await harness.start(user_queue_cap=50)
    bot.engine.scheduler.pause()
    shown = await answer(
        server,
        w.manager,
        "server settings",
        {
            "allow_channel": w.nsfw_a,
            "role": artists,
            "daily_quota": 3,
            "max_steps": 2,
            "max_count": 1,
            "private_default": True,
            "image_safety": "withhold",
        },
    )
    text = shown.messages[-1].content
    assert f"<#{w.nsfw_a.id}>" in text and "withhold" in text and "quota per member: 3" in text
    policy = await bot.store.guilds.get(w.guild_a.id)
    assert policy.allowed_channel_ids == (w.nsfw_a.id,) and policy.daily_quota == 3
    # Shown back unchanged when asked with no option.
    again = await answer(server, w.manager, "server settings")
    assert again.messages[-1].content == text

    await refused(harness, w.member, {"prompt": "a fox"}, w.channel_a, "not made in this channel")
    await refused(harness, w.author, {"prompt": "a fox"}, w.nsfw_a, "needs the <@&")
    await refused(harness, w.manager, {"prompt": "a fox", "steps": 3}, w.nsfw_a, "at most 2 steps")
    await refused(
        harness, w.manager, {"prompt": "a fox", "steps": 1, "count": 2}, w.nsfw_a, "at most 1"
    )
    first = await imagine_queued(server, w.member, "fox 1", channel=w.nsfw_a)
    # The quota note is a followup of its own, sent just after the status line says "queued".
    await wait_for(lambda: said(first, "You can make 2 more today; resets <t:"), what="quota note")
    assert first.ephemeral, "the server's private default"
    rows = (await bot.store.jobs.for_user(w.member.id)).jobs
    assert rows[0].private and rows[0].age_restricted
    await imagine_queued(server, w.member, "fox 2", channel=w.nsfw_a)
    third = await imagine_queued(server, w.member, "fox 3", channel=w.nsfw_a)
    await wait_for(lambda: said(third, "You can make 0 more today"), what="last quota note")
    await refused(harness, w.member, {"prompt": "fox 4", "steps": 1}, w.nsfw_a, "resets <t:")
    # Server B keeps its defaults: no quota, every channel, public results.
    in_b = await imagine_queued(server, w.member, "fox in B", channel=w.channel_b)
    # The command's handler is done (its job followed) once it could have sent a quota note.
    job_b = in_b.original.content.split("`")[1]
    await wait_for(lambda: (live := bot.live.get(job_b)) and live.tracker, what="job B followed")
    assert not said(in_b, "more today") and not in_b.ephemeral

    # Cooldown, then back to the defaults.
    await answer(server, w.manager, "server settings", {"reset": True})
    await answer(server, w.manager, "server settings", {"cooldown": 3600})
    await imagine_queued(server, w.author, "first", channel=w.channel_a)
    await refused(harness, w.author, {"prompt": "second", "steps": 1}, w.channel_a, "cooldown")
    await answer(server, w.manager, "server settings", {"reset": True})
    assert await bot.store.guilds.get(w.guild_a.id) == await bot.store.guilds.get(w.guild_b.id)


async def test_bad_settings_are_refused_and_members_cannot_change_them(
    harness: BotHarness,
) -> None:
    w = two_servers(harness.server)
    server = w.server
    bot = await harness.start()
    member = await answer(server, w.member, "server settings", {"cooldown": 5})
    assert "managers" in member.messages[-1].content
    assert (await bot.store.guilds.get(w.guild_a.id)).cooldown_s == 0
    bad = await server.raw_slash(
        w.manager,
        "server",
        lambda p: p["data"].update(
            options=[
                {
                    "name": "settings",
                    "type": 1,
                    "options": [{"name": "max_steps", "type": 10, "value": 1.5}],
                }
            ]
        ),
    )
    await bad.wait_response(within_s=3.0)
    assert (await bot.store.guilds.get(w.guild_a.id)).max_steps is None


async def jobs_in(harness: BotHarness, user_id: int, guild_id: int) -> int:
    assert harness.bot is not None
    async with harness.bot.store.db.read() as session:
        query = (
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.user_id == user_id, JobRow.guild_id == guild_id)
        )
        return int(await session.scalar(query) or 0)


async def test_cooldown_and_quota_spare_owners_everywhere_and_managers_in_their_server(
    harness: BotHarness,
) -> None:
    w = two_servers(harness.server)
    bot = await harness.start(user_queue_cap=50)
    bot.engine.scheduler.pause()
    for guild in (w.guild_a, w.guild_b):
        await bot.store.guilds.update(guild.id, {"cooldown_s": 3600, "daily_quota": 1})
    # (who, where) -> jobs made by two /imagine in a row through the real admission path.
    cases = {
        ("owner", "B"): (w.owner, w.guild_b, w.channel_b, 2),
        ("manager of A", "A"): (w.manager, w.guild_a, w.channel_a, 2),
        ("manager of A", "B"): (w.manager, w.guild_b, w.channel_b, 1),
        ("member", "A"): (w.member, w.guild_a, w.channel_a, 1),
    }
    made: dict[tuple[str, str], int] = {}
    for key, (user, guild, channel, _) in cases.items():
        for i in range(2):
            await answer(
                w.server, user, "imagine", {"prompt": f"{key} {i}", "steps": 1}, channel=channel
            )
        made[key] = await jobs_in(harness, user.id, guild.id)
    assert made == {key: case[3] for key, case in cases.items()}
    # Exempt jobs still count in the server's usage.
    report = await bot.store.usage.report(w.guild_a.id)
    assert {line.user_id: line.jobs for line in report.per_user}[w.manager.id] == 2


async def test_the_quota_note_stays_visible_after_the_job_is_done(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    bot = await harness.start()
    await bot.store.guilds.update(w.guild_a.id, {"daily_quota": 3})
    record = await w.server.slash(
        w.member, "imagine", {"prompt": "a fox", "steps": 1}, channel=w.channel_a
    )
    await wait_for(lambda: results(w.server), within_s=90, what="the result")
    # The status line is edited with progress, then removed once the result is posted; the
    # note must outlive it, seen by the member alone.
    await wait_for(lambda: record.original.deleted, what="the status line to go")
    notes = [
        m for m in record.messages if not m.deleted and "2 more today; resets <t:" in m.content
    ]
    assert len(notes) == 1 and notes[0].ephemeral, [(m.content, m.deleted) for m in record.messages]
    assert not results(w.server)[0].ephemeral and "more today" not in str(
        results(w.server)[0].embeds
    )


async def test_image_actions_count_against_the_quota_like_imagine(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    bot = await harness.start()
    await bot.store.guilds.update(w.guild_a.id, {"daily_quota": 2})
    await w.server.slash(w.member, "imagine", {"prompt": "a fox", "steps": 1}, channel=w.channel_a)
    original = await wait_for(lambda: results(w.server) and results(w.server)[0], within_s=90)
    vary = next(c for c in original.custom_ids() if c.startswith("flux:img:vary1:"))

    click = await w.server.click(w.member, original, vary)
    await wait_for(lambda: click.followups, what="the vary's answer")
    assert "0 more today" in click.followups[0].content, click.followups[0].content
    assert await jobs_of(harness, w.member.id) == 2

    again = await w.server.click(w.member, original, vary)
    await wait_for(lambda: again.followups, what="the refusal")
    assert again.followups[0].ephemeral and "quota" in again.followups[0].content.lower()
    assert await jobs_of(harness, w.member.id) == 2, "a refused vary made a job"
