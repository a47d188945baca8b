"""Where a finished image may be shown, by its safety verdict and the server's policy.

Outside age-restricted channels a flagged image is posted as a spoiler or withheld (kept in its
owner's history, shown in an age-restricted channel), as the server's `/server settings` say;
in an age-restricted channel, or with the policy off, it is posted as it is. Images that were
never classified (the check was off or failed) are posted as they are.
"""

from __future__ import annotations

from enum import StrEnum

from fluxbot.store.guilds import SafetyPolicy
from fluxbot.store.models import FLAGGED


class Route(StrEnum):
    SHOW = "show"
    SPOILER = "spoiler"
    WITHHOLD = "withhold"


def route_image(
    verdict: str | None, policy: SafetyPolicy, *, age_restricted_channel: bool
) -> Route:
    """How one image goes out."""
    if verdict != FLAGGED or age_restricted_channel or policy is SafetyPolicy.OFF:
        return Route.SHOW
    return Route.SPOILER if policy is SafetyPolicy.SPOILER else Route.WITHHOLD
