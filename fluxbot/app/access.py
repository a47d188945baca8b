"""Who may see a job, and so act on it: the one place the rule lives.

A job is visible to everyone unless it is private; a private job only to its owner and the
bot's admins. Derived jobs (vary, upscale, ...) inherit their parent's privacy, so this rule
covers them too.
"""

from __future__ import annotations

from fluxbot.store.models import JobRow


def may_view(job: JobRow, actor_id: int, *, admin: bool = False) -> bool:
    """Whether `actor_id` may see `job` (and so vary, remix, upscale, zoom or pan it)."""
    return not job.private or job.user_id == actor_id or admin
