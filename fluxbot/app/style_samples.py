"""Sample images of styles: the latest image a style made that was posted in public.

Only public results become samples (a private result stays private); one PNG per style, written
atomically under `<data dir>/styles/samples/`, so /styles can show it after a restart.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from fluxbot.core.styles import STYLE_NAME

log = logging.getLogger(__name__)


class StyleSamples:
    """Where each style's sample image lives; `offer` replaces it with a newer public one."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "styles" / "samples"

    def path(self, style: str) -> Path | None:
        """The style's sample image, if one exists."""
        if not STYLE_NAME.match(style):
            return None
        candidate = self.root / f"{style}.png"
        return candidate if candidate.is_file() else None

    def offer(self, style: str, png: bytes) -> None:
        """Keep `png` (a public result of `style`) as its sample."""
        if not STYLE_NAME.match(style) or not png:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False, suffix=".part") as handle:
            handle.write(png)
            temp = Path(handle.name)
        os.replace(temp, self.root / f"{style}.png")
        log.debug("sample image of style %s updated", style)
