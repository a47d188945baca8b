"""Styles: named LoRAs and prompt presets an owner offers (the vocabulary; no torch, no I/O).

A `Style` is what the styles file describes; a `LoraSpec` is the part of it that decides pixels
on the GPU and travels with each request (so a reroll keeps the LoRA even if the file changes).
Reading and checking the file is `fluxbot.app.styles`; loading LoRAs is `fluxbot.engine.lora`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LORA_WEIGHT_MIN = -2.0
LORA_WEIGHT_MAX = 2.0
STYLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PROMPT_SLOT = "{prompt}"


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """A LoRA as a job needs it: its source (a local .safetensors file or a hub id) and weight."""

    source: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("a LoRA needs a source: a .safetensors file or a hub id")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"weight {weight!r} is not a number")
        if not LORA_WEIGHT_MIN <= weight <= LORA_WEIGHT_MAX:
            raise ValueError(
                f"weight {weight:g} is out of range: allowed {LORA_WEIGHT_MIN:g} to "
                f"{LORA_WEIGHT_MAX:g}"
            )

    def to_params(self) -> dict[str, Any]:
        return {"source": self.source, "weight": float(self.weight)}

    @classmethod
    def from_params(cls, params: Any) -> LoraSpec:
        return cls(source=str(params["source"]), weight=float(params.get("weight", 1.0)))


@dataclass(frozen=True, slots=True)
class Style:
    """A named style: an optional LoRA, its trigger words, a prompt template and a negative."""

    name: str
    lora: LoraSpec | None = None
    trigger_words: tuple[str, ...] = ()
    template: str = ""
    negative: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not STYLE_NAME.match(self.name):
            raise ValueError(
                "a style name is 1-32 characters of lower-case letters, digits, '-' and '_', "
                "starting with a letter or digit"
            )
        if self.template and PROMPT_SLOT not in self.template:
            raise ValueError(f"template {self.template!r} has no {PROMPT_SLOT} slot")
        if self.lora is None and not (self.template or self.trigger_words or self.negative):
            raise ValueError("a style needs a lora, a template, trigger words or a negative")

    def apply(self, prompt: str) -> str:
        """The prompt as the style words it: the template around it, then any trigger word the
        prompt lacks in front (a LoRA trained on a trigger word needs to see it)."""
        text = self.template.replace(PROMPT_SLOT, prompt) if self.template else prompt
        lowered = text.lower()
        missing = [word for word in self.trigger_words if word.lower() not in lowered]
        return ", ".join([*missing, text]) if missing else text

    def negative_for(self, negative: str | None) -> str:
        """The user's negative wins; otherwise the style's own."""
        return negative if negative else self.negative

    def summary(self) -> str:
        """One line for listings: what the style is made of."""
        parts = []
        if self.lora is not None:
            parts.append(f"LoRA {self.lora.source} x{self.lora.weight:g}")
        else:
            parts.append("prompt preset")
        if self.trigger_words:
            parts.append("triggers: " + ", ".join(self.trigger_words))
        if self.template:
            parts.append(f"template: {self.template}")
        if self.negative:
            parts.append(f"negative: {self.negative}")
        return "; ".join(parts)
