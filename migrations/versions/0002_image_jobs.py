"""Jobs that start from an image: operation, source image, privacy; the source images table.

Revision ID: 0002_image_jobs
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_image_jobs"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("operation", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("source_sha256", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("private", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.create_index(batch.f("ix_jobs_source_sha256"), ["source_sha256"])
    op.create_table(
        "source_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_source_images_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_images")),
        sa.UniqueConstraint("path", name=op.f("uq_source_images_path")),
        sa.UniqueConstraint("user_id", "sha256", name="uq_source_images_user_id_sha256"),
    )


def downgrade() -> None:
    op.drop_table("source_images")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(batch.f("ix_jobs_source_sha256"))
        batch.drop_column("private")
        batch.drop_column("source_sha256")
        batch.drop_column("operation")
