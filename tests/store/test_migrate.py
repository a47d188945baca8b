"""Migrations: they agree with the models, and each one upgrades and downgrades on a real file."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from fluxbot.config import load_settings
from fluxbot.store import Base, Store, current_revision, downgrade_database, upgrade_database
from fluxbot.store.db import create_engine
from fluxbot.store.migrate import alembic_config, head_revision, migrations_dir

from .helpers import make_request, sqlite_url

TABLES = {
    "users",
    "jobs",
    "images",
    "seed_history",
    "source_images",
    "guild_settings",
    "bans",
    "usage",
}


async def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def compare(sync: sa.Connection) -> list[object]:
                context = MigrationContext.configure(
                    sync, opts={"compare_type": True, "render_as_batch": True}
                )
                return list(compare_metadata(context, metadata))

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            return set(names) - {"alembic_version"}
    finally:
        await engine.dispose()


def test_migrations_dir_is_found_next_to_the_package() -> None:
    found = migrations_dir()
    assert (found / "env.py").is_file()
    assert found == Path(__file__).resolve().parents[2] / "migrations"


async def test_models_and_migrations_agree(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "agree.db")
    await upgrade_database(url)
    assert await _diff(url, Base.metadata) == []


async def test_comparison_notices_a_model_change(tmp_path: Path) -> None:
    """The agreement check above can fail: a column the migrations lack is reported."""
    url = sqlite_url(tmp_path / "drift.db")
    await upgrade_database(url)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["users"].append_column(sa.Column("nickname", sa.String(32)))
    diff = await _diff(url, drifted)
    assert [entry[0] for entry in diff] == ["add_column"]


async def test_every_migration_upgrades_and_downgrades(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "steps.db")
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert revisions, "no migrations found"
    for revision in revisions:
        await upgrade_database(url, revision.revision)
        assert await current_revision(url) == revision.revision
        down = revision.down_revision if isinstance(revision.down_revision, str) else "base"
        await downgrade_database(url, down or "base")
        assert await current_revision(url) == (None if down in (None, "base") else down)
        await upgrade_database(url, revision.revision)
    assert await current_revision(url) == head_revision()
    assert await _tables(url) == TABLES
    await downgrade_database(url, "base")
    assert await _tables(url) == set()
    assert await current_revision(url) is None


async def test_upgrade_is_repeatable_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    url = sqlite_url(data_dir / "nested" / "fluxbot.db")  # parent dirs are created
    store = await Store.open(url, data_dir)
    job = await store.jobs.create(1, make_request())
    await store.close()
    await upgrade_database(url)
    store = await Store.open(url, data_dir)
    try:
        again = await store.jobs.by_public_id(job.public_id)
        assert again is not None and again.prompt == job.prompt
    finally:
        await store.close()


async def test_store_opens_from_settings(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "from-settings", database_url=None)
    store = await Store.open(settings)
    try:
        assert store.data_dir == settings.data_dir
        assert (settings.data_dir / "fluxbot.db").is_file()
        assert await current_revision(settings.db_url) == head_revision()
    finally:
        await store.close()


async def test_a_database_from_before_image_jobs_upgrades(tmp_path: Path) -> None:
    """A 0001 database with jobs in it gains the image-job columns; its jobs stay public."""
    url = sqlite_url(tmp_path / "old.db")
    await upgrade_database(url, "0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO users (id, seed_profile, default_aspect, default_steps, "
                    "private_results, banned, created_at) VALUES "
                    "(5, 'random', '1:1', 4, 0, 0, '2025-11-26 00:00:00+00:00')"
                )
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO jobs (public_id, user_id, kind, prompt, negative, params, seed, "
                    "status, attempts, created_at) VALUES ('old1', 5, 'imagine', 'a fox', '', "
                    """'{"prompt": "a fox", "seed": 3}', 3, 'done', 1, """
                    "'2025-11-26 00:00:00+00:00')"
                )
            )
    finally:
        await engine.dispose()
    store = await Store.open(url, tmp_path / "data")
    try:
        job = await store.jobs.get(1)
        assert job is not None
        assert (job.private, job.operation, job.source_sha256) == (False, None, None)
        assert job.request.edit is None and job.request.seed == 3
    finally:
        await store.close()


async def test_an_old_database_upgrades_to_servers(tmp_path: Path) -> None:
    """0001 -> head: old bans become global, old results count as delivered, and preferences an
    older version stored unchecked (steps 1.5) go back to defaults instead of breaking jobs."""
    url = sqlite_url(tmp_path / "old.db")
    await upgrade_database(url, "0001")
    engine = create_engine(url)
    now = "2026-01-01 10:00:00.000000"
    async with engine.begin() as connection:
        for user_id, banned, steps, aspect in ((1, 1, 4, "1:1"), (2, 0, 1.5, "5:4")):
            await connection.execute(
                sa.text(
                    "INSERT INTO users (id, seed_profile, default_aspect, default_steps, "
                    "private_results, banned, created_at) VALUES (:id, 'random', :aspect, "
                    ":steps, 0, :banned, :now)"
                ),
                {"id": user_id, "aspect": aspect, "steps": steps, "banned": banned, "now": now},
            )
        await connection.execute(
            sa.text(
                "INSERT INTO jobs (public_id, user_id, kind, prompt, negative, params, seed, "
                "status, attempts, created_at, finished_at) VALUES ('OLDJOB01', 2, 'imagine', "
                "'old', '', '{}', 1, 'done', 1, :now, :now)"
            ),
            {"now": now},
        )
    await engine.dispose()
    await upgrade_database(url)
    store = await Store.open(url, tmp_path / "data")
    try:
        assert await store.bans.is_banned(1, 12345), "an old ban holds everywhere"
        assert not await store.bans.is_banned(2, None)
        user = await store.users.get(2)
        assert user is not None and (user.default_steps, user.default_aspect) == (4, "1:1")
        assert await store.jobs.undelivered() == []
        old = await store.jobs.get(1)
        assert old is not None and not old.private and old.delivered_at is not None
    finally:
        await store.close()
