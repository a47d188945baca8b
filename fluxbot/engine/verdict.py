"""An image-safety verdict: what the classifier (fluxbot.engine.safety) said about one image.

Kept apart from the classifier so the encoder can carry a verdict without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SAFE = "safe"
FLAGGED = "flagged"
# What makes an image "flagged": explicit nudity only (faces, feet, covered parts do not).
EXPLICIT_LABELS = frozenset(
    {
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
    }
)


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """The classifier's verdict on one image, with the scores it came from (stored with it)."""

    flagged: bool
    scores: dict[str, float] = field(default_factory=dict)
    model: str = "nudenet-320n"

    @property
    def label(self) -> str:
        return FLAGGED if self.flagged else SAFE

    def worst(self) -> tuple[str, float] | None:
        """The highest-scoring explicit label, for messages and logs."""
        explicit = [(k, v) for k, v in self.scores.items() if k in EXPLICIT_LABELS]
        return max(explicit, key=lambda kv: kv[1]) if explicit else None
