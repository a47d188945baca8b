"""The styles file: named LoRAs and prompt presets, read and checked once at start.

```toml
[styles.watercolor]
lora = "loras/watercolor.safetensors"   # a file (relative to this file) or a hub id
weight = 0.8                            # -2 to 2
trigger_words = ["wtrclr"]
template = "{prompt}, watercolor, soft light"
negative = "photo, 3d render"
description = "Loose watercolor washes"

[styles.noir]                           # a prompt preset: no LoRA
template = "{prompt}, film noir, high contrast black and white"
```

Every problem (a missing file, a LoRA whose layers do not fit FLUX's transformer, a weight out of
range, an unknown key) raises `StylesError`: one line naming the style and the problem, which
`fluxbot run` and `fluxbot styles` print before exiting with code 2.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxbot.config import Settings
from fluxbot.core.styles import LoraSpec, Style

log = logging.getLogger(__name__)

STYLE_KEYS = ("lora", "weight", "trigger_words", "template", "negative", "description")
MAX_STYLES = 500


class StylesError(Exception):
    """The styles file cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class StyleCatalog:
    """The owner's styles, in file order; looked up by name, searched for autocomplete."""

    styles: tuple[Style, ...] = ()
    path: Path | None = None
    _by_name: dict[str, Style] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({style.name: style for style in self.styles})

    def __len__(self) -> int:
        return len(self.styles)

    def __iter__(self) -> Iterator[Style]:
        return iter(self.styles)

    def get(self, name: str) -> Style | None:
        return self._by_name.get(name.strip().lower())

    def require(self, name: str) -> Style:
        """The style called `name`, or a RequestError listing what exists."""
        from fluxbot.core.requests import RequestError

        style = self.get(name)
        if style is None:
            known = ", ".join(s.name for s in self.styles[:20]) or "none are configured"
            raise RequestError("style", name, f"one of the styles: {known}")
        return style

    def search(self, text: str, limit: int = 25) -> list[Style]:
        """Styles whose name starts with `text`, then those containing it anywhere (name,
        description, trigger words): what autocomplete offers, at most `limit`."""
        needle = text.strip().lower()
        if not needle:
            return list(self.styles[:limit])
        first = [s for s in self.styles if s.name.startswith(needle)]
        rest = [
            s
            for s in self.styles
            if s not in first
            and (
                needle in s.name
                or needle in s.description.lower()
                or any(needle in word.lower() for word in s.trigger_words)
            )
        ]
        return (first + rest)[:limit]

    def loras(self) -> list[LoraSpec]:
        """The distinct LoRAs the styles use (what a replica's LoRA slot is sized for)."""
        return list(dict.fromkeys(s.lora for s in self.styles if s.lora is not None))


def _text(style: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StylesError(f"style {style!r}: {key} must be text, not {value!r}")
    return value.strip()


def _lora_source(base: Path, value: str) -> str:
    """A path relative to the styles file, or a hub id (`owner/name`) if no such file exists."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    looks_like_file = value.endswith((".safetensors", ".bin")) or value.startswith(("/", ".", "~"))
    if candidate.is_file() or looks_like_file:
        return str(candidate.resolve())
    return value


def parse_style(name: str, raw: Any, base: Path) -> Style:
    """One `[styles.NAME]` table as a Style (the LoRA itself is checked by `check_loras`)."""
    if not isinstance(raw, Mapping):
        raise StylesError(f"style {name!r}: expected a table of settings")
    unknown = sorted(set(raw) - set(STYLE_KEYS))
    if unknown:
        raise StylesError(
            f"style {name!r}: unknown setting {unknown[0]!r}; allowed: {', '.join(STYLE_KEYS)}"
        )
    lora = None
    if "lora" in raw:
        source = _text(name, "lora", raw["lora"])
        weight = raw.get("weight", 1.0)
        try:
            lora = LoraSpec(_lora_source(base, source), weight)
        except ValueError as exc:
            raise StylesError(f"style {name!r}: {exc}") from None
    elif "weight" in raw:
        raise StylesError(f"style {name!r}: weight is set but there is no lora")
    words = raw.get("trigger_words", [])
    if isinstance(words, str):
        words = [words]
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise StylesError(f"style {name!r}: trigger_words must be a list of words")
    try:
        return Style(
            name=name,
            lora=lora,
            trigger_words=tuple(w.strip() for w in words),
            template=_text(name, "template", raw.get("template", "")),
            negative=_text(name, "negative", raw.get("negative", "")),
            description=_text(name, "description", raw.get("description", "")),
        )
    except ValueError as exc:
        raise StylesError(f"style {name!r}: {exc}") from None


def parse_styles(text: str, path: Path) -> StyleCatalog:
    """The styles of a TOML document (no LoRA is opened here)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StylesError(f"styles file {path} is not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"styles"})
    if extra:
        raise StylesError(
            f"styles file {path}: unknown section {extra[0]!r}; put each style under [styles.NAME]"
        )
    table = data.get("styles", {})
    if not isinstance(table, Mapping):
        raise StylesError(f"styles file {path}: 'styles' must be a table of [styles.NAME]")
    if len(table) > MAX_STYLES:
        raise StylesError(f"styles file {path}: {len(table)} styles, at most {MAX_STYLES}")
    styles = [parse_style(name, raw, path.parent) for name, raw in table.items()]
    return StyleCatalog(tuple(styles), path)


def transformer_config(model: str) -> dict[str, Any] | None:
    """The transformer dimensions a LoRA must fit: the tiny model's, a local model's own
    config, or (a hub id) FLUX.1's, which are diffusers' defaults."""
    from fluxbot.engine.pipeline import TINY_RANDOM

    if model == TINY_RANDOM:
        from fluxbot.engine.model_builder import TINY

        return dict(TINY.transformer)
    config = Path(model).expanduser() / "transformer" / "config.json"
    if config.is_file():
        raw = json.loads(config.read_text())
        return {k: v for k, v in raw.items() if not k.startswith("_")}
    return None


def check_loras(catalog: StyleCatalog, model: str) -> None:
    """Open every style's LoRA and check its layers against the model's transformer."""
    if not catalog.loras():
        return
    from fluxbot.engine.lora import (
        LoraError,
        check_lora_fits,
        flux_linear_shapes,
        meta_transformer,
        read_lora,
    )

    shapes = flux_linear_shapes(meta_transformer(transformer_config(model)))
    checked: dict[str, str | None] = {}
    for style in catalog:
        if style.lora is None:
            continue
        source = style.lora.source
        if source not in checked:
            try:
                check_lora_fits(read_lora(source), shapes)
                checked[source] = None
            except LoraError as exc:
                checked[source] = str(exc)
        if checked[source] is not None:
            raise StylesError(f"style {style.name!r}: LoRA {source}: {checked[source]}")


def load_styles(settings: Settings, *, check: bool = True) -> StyleCatalog:
    """The styles of FLUXBOT_STYLES (which must exist when set) or of the data dir's
    styles.toml (optional); with `check`, every LoRA is opened and checked."""
    path = settings.styles_path
    if not path.is_file():
        if settings.styles is not None:
            raise StylesError(f"FLUXBOT_STYLES={path}: no such file")
        return StyleCatalog((), None)
    catalog = parse_styles(path.read_text(encoding="utf-8"), path)
    if check:
        check_loras(catalog, settings.model)
    log.info("styles: %d from %s (%d with a LoRA)", len(catalog), path, len(catalog.loras()))
    return catalog
