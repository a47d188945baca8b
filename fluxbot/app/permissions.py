"""Who may do what, and where: one function per decision, shared by every front end.

Three kinds of people:
- bot owners (the application's owner or team members, and FLUXBOT_ADMIN_IDS): everything,
  everywhere;
- server managers (Manage Server or Administrator in a server): only in that server, and only
  while acting there (their power in server A does not follow them into server B);
- everyone else: their own jobs.

The adapters (Discord cogs, the web studio) build an `Actor` from what they know and ask one of
these functions before doing anything; each returns a `Decision` whose `reason` is the sentence
to show when it refuses. No Discord types here: the web studio uses the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fluxbot.core.errors import UserError


class PermissionDenied(UserError):
    """Raised by `require` with the decision's reason, a sentence meant for the user."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Someone acting: their id, whether they own the bot, and the server they act in."""

    user_id: int
    owner: bool = False
    # The server the action comes from (None: a DM, the CLI, a web page outside any server).
    guild_id: int | None = None
    # Manage Server or Administrator in `guild_id`.
    manager: bool = False

    def manages(self, guild_id: int | None) -> bool:
        """Owners manage every server; a manager only the one they act in."""
        if self.owner:
            return True
        return self.manager and guild_id is not None and guild_id == self.guild_id


class JobFacts(Protocol):
    """What the decisions need to know about a job (the store's row has these)."""

    user_id: int
    guild_id: int | None
    private: bool
    age_restricted: bool


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a listing may look: one server, or every server (`guild_id` None)."""

    guild_id: int | None

    @property
    def everywhere(self) -> bool:
        return self.guild_id is None


EVERYWHERE = Scope(None)

OWNERS_ONLY = "Only the bot's owners can do that."
MANAGERS_ONLY = "Only this server's managers (Manage Server) can do that."
NOT_YOUR_JOB = "Only the person who asked for this image, or a manager of its server, can do that."
PRIVATE_JOB = "That job is private: only its owner or a manager of its server can see it."
AGE_RESTRICTED_JOB = "That job was made in an age-restricted channel: it can only be shown in one."


def require(decision: Decision) -> None:
    """Raise `PermissionDenied` with the reason when the decision refuses."""
    if not decision.allowed:
        raise PermissionDenied(decision.reason)


def can_control_bot(actor: Actor) -> Decision:
    """Pause, resume, sync commands, purge users: the whole bot, so its owners only."""
    return ALLOWED if actor.owner else Decision(False, OWNERS_ONLY)


def can_manage_guild(actor: Actor, guild_id: int | None) -> Decision:
    """A server's settings, usage statistics and flagged images."""
    if guild_id is None:
        return Decision(False, "That only works inside a server.")
    return ALLOWED if actor.manages(guild_id) else Decision(False, MANAGERS_ONLY)


def can_ban(actor: Actor, guild_id: int | None) -> Decision:
    """Ban or unban in one server (its managers), or everywhere (`guild_id` None: owners)."""
    if guild_id is None:
        return can_control_bot(actor)
    return can_manage_guild(actor, guild_id)


def exempt_from_limits(actor: Actor, guild_id: int | None) -> bool:
    """A server's cooldown and daily quota are for its members: bot owners skip them
    everywhere, a server's managers in the server they manage (not elsewhere)."""
    return actor.manages(guild_id)


def can_cancel_job(actor: Actor, job: JobFacts) -> Decision:
    """Cancel or delete a job: its owner, or a manager of the server where it was made."""
    if job.user_id == actor.user_id or actor.manages(job.guild_id):
        return ALLOWED
    return Decision(False, NOT_YOUR_JOB)


def can_view_job(actor: Actor, job: JobFacts) -> Decision:
    """See a job's prompt and images: anyone for a public job; a private one only its owner or
    a manager of the server where it was made."""
    if not job.private or job.user_id == actor.user_id or actor.manages(job.guild_id):
        return ALLOWED
    return Decision(False, PRIVATE_JOB)


def can_show_job(actor: Actor, job: JobFacts, *, age_restricted_channel: bool) -> Decision:
    """Post a job's result in a channel (`/show`): it must be visible to the actor, and an
    age-restricted job only goes to an age-restricted channel, whoever asks."""
    visible = can_view_job(actor, job)
    if not visible:
        return visible
    if job.age_restricted and not age_restricted_channel:
        return Decision(False, AGE_RESTRICTED_JOB)
    return ALLOWED


def can_reuse_job(actor: Actor, job: JobFacts, *, age_restricted_channel: bool) -> Decision:
    """🔁 / 🎲: make a new image from a job's request, which shows what the job was."""
    return can_show_job(actor, job, age_restricted_channel=age_restricted_channel)


def history_scope(actor: Actor, user_id: int) -> Scope | Decision:
    """Whose history, and how much: one's own everywhere; a member's jobs made in the server a
    manager acts in; anyone's everywhere for owners. A refusal comes back as a `Decision`."""
    if user_id == actor.user_id or actor.owner:
        return EVERYWHERE
    if actor.manager and actor.guild_id is not None:
        return Scope(actor.guild_id)
    return Decision(False, "Only your own history, unless you manage this server.")


def queue_scope(actor: Actor) -> Scope | Decision:
    """`/queue`, `/gpu`, flagged lists, usage: every server for owners, one's own server for a
    manager, nothing for others."""
    if actor.owner:
        return EVERYWHERE
    if actor.manager and actor.guild_id is not None:
        return Scope(actor.guild_id)
    return Decision(False, MANAGERS_ONLY)
