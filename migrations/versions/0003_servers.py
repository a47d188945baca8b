"""Many servers: per-server settings, scoped bans, usage, job privacy, image safety, delivery.

Old databases upgrade in place: a user banned before becomes banned everywhere (a bot-wide ban),
every job finished before counts as delivered (nothing old is posted again), and preferences an
older version stored unchecked (steps 1.5, an unknown aspect) go back to their defaults.

Revision ID: 0003_servers
Revises: 0002_image_jobs
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_servers"
down_revision: str | Sequence[str] | None = "0002_image_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GLOBAL_SCOPE = 0
ASPECTS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")


def upgrade() -> None:
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("allowed_channel_ids", sa.JSON(), nullable=False),
        sa.Column("required_role_id", sa.BigInteger(), nullable=True),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=True),
        sa.Column("max_steps", sa.Integer(), nullable=True),
        sa.Column("private_default", sa.Boolean(), nullable=False),
        sa.Column("safety_policy", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_settings")),
    )
    bans = op.create_table(
        "bans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("banned_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bans")),
        sa.UniqueConstraint("user_id", "guild_id", name="uq_bans_user_id_guild_id"),
    )
    op.create_table(
        "usage",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("last_job_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("guild_id", "user_id", "day", name=op.f("pk_usage")),
    )
    # jobs.private came with 0002_image_jobs.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("age_restricted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column(
                "delivery_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("safety_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("safety_scores", sa.JSON(), nullable=True))

    jobs = sa.table(
        "jobs",
        sa.column("status", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("delivered_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        jobs.update()
        .where(jobs.c.status.in_(("done", "failed", "cancelled")))
        .values(delivered_at=sa.func.coalesce(jobs.c.finished_at, jobs.c.created_at))
    )
    users = sa.table(
        "users",
        sa.column("id", sa.BigInteger()),
        sa.column("banned", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("default_steps", sa.Integer()),
        sa.column("default_aspect", sa.String()),
        sa.column("private_results", sa.Boolean()),
    )
    steps = users.c.default_steps
    op.execute(
        users.update()
        .where(
            sa.or_(
                steps.is_(None),
                steps < 1,
                steps > 50,
                steps != sa.cast(steps, sa.Integer()),
            )
        )
        .values(default_steps=4)
    )
    op.execute(
        users.update()
        .where(sa.or_(users.c.default_aspect.is_(None), users.c.default_aspect.not_in(ASPECTS)))
        .values(default_aspect="1:1")
    )
    op.execute(
        users.update()
        .where(sa.or_(users.c.private_results.is_(None), users.c.private_results.not_in((0, 1))))
        .values(private_results=False)
    )
    op.execute(
        bans.insert().from_select(
            ["user_id", "guild_id", "created_at"],
            sa.select(users.c.id, sa.literal(GLOBAL_SCOPE), users.c.created_at).where(
                users.c.banned == sa.true()
            ),
        )
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("banned")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("banned", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    users = sa.table("users", sa.column("id", sa.BigInteger()), sa.column("banned", sa.Boolean()))
    bans = sa.table(
        "bans", sa.column("user_id", sa.BigInteger()), sa.column("guild_id", sa.BigInteger())
    )
    globally = sa.select(bans.c.user_id).where(bans.c.guild_id == GLOBAL_SCOPE)
    op.execute(users.update().where(users.c.id.in_(globally)).values(banned=True))
    with op.batch_alter_table("images") as batch:
        batch.drop_column("safety_scores")
        batch.drop_column("safety_verdict")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("delivery_error")
        batch.drop_column("delivery_attempts")
        batch.drop_column("delivered_at")
        batch.drop_column("age_restricted")
    op.drop_table("usage")
    op.drop_table("bans")
    op.drop_table("guild_settings")
