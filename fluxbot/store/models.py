"""The store's tables as typed ORM models: users, jobs, images, each user's seed history, and the
per-server tables (settings, bans, usage).

Objects handed out by the repositories are detached snapshots (`expire_on_commit=False`);
change rows through repository methods, not by setting attributes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fluxbot.core.requests import GenerationRequest, JobKind, JobStatus
from fluxbot.store.types import UTCDateTime, utcnow

# Stable constraint names, so Alembic's batch mode on SQLite can find and alter them later.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEFAULT_SEED_PROFILE = "random"
DEFAULT_ASPECT = "1:1"
DEFAULT_STEPS = 4
# Room to grow: the enums are stored as plain strings without a CHECK, so adding a member
# later needs no table rebuild.
ENUM_LENGTH = 16
# A ban's guild_id for a ban everywhere (bot owners); a server's id for a ban there only.
GLOBAL_SCOPE = 0
# An image's `safety_verdict` when the classifier flagged it (SafetyVerdict.label's value).
FLAGGED = "flagged"
ACTIVE_STATUSES: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES: tuple[JobStatus, ...] = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def _str_enum(enum_class: type[JobKind] | type[JobStatus]) -> Enum:
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of every fluxbot table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A Discord user's preferences and moderation state, keyed by their Discord id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seed_profile: Mapped[str] = mapped_column(String(32), default=DEFAULT_SEED_PROFILE)
    # The seed of the last image this user was given (for the 'increment' profile and /seed).
    last_seed: Mapped[int | None] = mapped_column(BigInteger)
    default_aspect: Mapped[str] = mapped_column(String(8), default=DEFAULT_ASPECT)
    default_steps: Mapped[int] = mapped_column(Integer, default=DEFAULT_STEPS)
    private_results: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"User(id={self.id}, seed_profile={self.seed_profile!r})"


class JobRow(Base):
    """One generation request and everything that happened to it, from queued to finished."""

    __tablename__ = "jobs"
    __table_args__ = (
        # Queue listing and recovery: active jobs, oldest first.
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # A user's history, newest first.
        Index("ix_jobs_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    interaction_id: Mapped[int | None] = mapped_column(BigInteger)
    application_id: Mapped[int | None] = mapped_column(BigInteger)
    # After this the interaction token is dead: post through the bot token instead.
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    result_message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    kind: Mapped[JobKind] = mapped_column(_str_enum(JobKind))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    # How the job was made from an image (fluxbot.core.edits.Operation), and from which one:
    # the parent's image or an upload, kept as a `source_images` row of this job's user.
    operation: Mapped[str | None] = mapped_column(String(ENUM_LENGTH))
    source_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # Private jobs are seen by their owner (and admins) only; children of a private job are too.
    private: Mapped[bool] = mapped_column(default=False, server_default=false())
    prompt: Mapped[str] = mapped_column(Text)
    negative: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus), default=JobStatus.QUEUED)
    device: Mapped[str | None] = mapped_column(String(64))
    # How many times a worker started it; recovery gives up on a job that keeps crashing us.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Age-restricted jobs were made in an NSFW channel and are shown only in one.
    age_restricted: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Delivery of the result: None until a post succeeded; a done job without it is retried
    # (also after a restart) and `/show` can always post it.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    delivery_error: Mapped[str | None] = mapped_column(Text)

    images: Mapped[list[Image]] = relationship(
        back_populates="job",
        order_by="Image.index",
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    @property
    def request(self) -> GenerationRequest:
        """The validated request this job runs (rebuilt from its stored parameters)."""
        return GenerationRequest.from_params(self.params)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def token_alive(self, now: datetime | None = None) -> bool:
        """Whether the interaction webhook can still answer this job (with 30 s to spare)."""
        if self.token_expires_at is None:
            return False
        return (now or utcnow()) < self.token_expires_at - timedelta(seconds=30)

    def __repr__(self) -> str:
        return (
            f"JobRow(id={self.id}, public_id={self.public_id!r}, user_id={self.user_id}, "
            f"kind={self.kind.value}, status={self.status.value})"
        )


class Image(Base):
    """One image file of a job; `path` is relative to the data dir and the file exists."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_images_job_id_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column("bytes", BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The image-safety classifier's verdict ('safe' / 'flagged'; None: not classified) and
    # its per-label scores.
    safety_verdict: Mapped[str | None] = mapped_column(String(16))
    safety_scores: Mapped[dict[str, float] | None] = mapped_column(JSON)

    @property
    def flagged(self) -> bool:
        return self.safety_verdict == FLAGGED

    job: Mapped[JobRow] = relationship(back_populates="images", lazy="raise")

    def __repr__(self) -> str:
        return (
            f"Image(job_id={self.job_id}, index={self.index}, seed={self.seed}, path={self.path!r})"
        )


class SourceImage(Base):
    """An image a user's jobs started from (an upload, or a parent job's image), stored once
    per user and hash so those jobs can be run again bit for bit; part of the user's data."""

    __tablename__ = "source_images"
    __table_args__ = (
        UniqueConstraint("user_id", "sha256", name="uq_source_images_user_id_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512), unique=True)
    format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column("bytes", BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"SourceImage(user_id={self.user_id}, sha256={self.sha256[:12]!r})"


class SeedUse(Base):
    """A seed a user was given, and by which job (kept when the job itself is pruned)."""

    __tablename__ = "seed_history"
    __table_args__ = (Index("ix_seed_history_user_id_used_at", "user_id", "used_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    seed: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"SeedUse(user_id={self.user_id}, seed={self.seed}, job_id={self.job_id})"


class GuildSettings(Base):
    """One server's policy, set by its managers with `/server settings` (defaults: no limits)."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # Channels where the bot may be used; empty means every channel.
    allowed_channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    required_role_id: Mapped[int | None] = mapped_column(BigInteger)
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    # Jobs per user per UTC day; 0 means no quota.
    daily_quota: Mapped[int] = mapped_column(Integer, default=0)
    max_count: Mapped[int | None] = mapped_column(Integer)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    private_default: Mapped[bool] = mapped_column(default=False)
    safety_policy: Mapped[str] = mapped_column(String(16), default="spoiler")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)


class Ban(Base):
    """A user who may not make images in one server, or anywhere (`guild_id == GLOBAL_SCOPE`).

    No foreign key to users: a ban must outlive the user's own data (forget-me keeps it).
    """

    __tablename__ = "bans"
    __table_args__ = (UniqueConstraint("user_id", "guild_id", name="uq_bans_user_id_guild_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    banned_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Usage(Base):
    """Jobs, images and GPU seconds of one user in one server on one UTC day.

    Counted when a job is queued (jobs) and when it finishes (images, GPU seconds), so quotas
    and `/server stats` survive deleted jobs. `guild_id` 0 stands for direct messages and the CLI.
    """

    __tablename__ = "usage"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    jobs: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_job_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
