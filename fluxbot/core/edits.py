"""Image operations: what turns an existing image into a new job (vary, remix, upscale, zoom,
pan, an uploaded image prompt), and the arithmetic behind them.

Pure functions and frozen values: the geometry of canvases, masks and tiles is decided here so
the engine, the store, the ETA model and the tests all agree on it. Every length is a multiple
of 16 pixels, FLUX's latent grid (8 px per latent, 2x2 latents per token), so a mask edge falls
exactly between tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from fluxbot.core.validation import SIZE_MULTIPLE, RequestError

STRENGTH_MIN = 0.05
STRENGTH_MAX = 1.0
VARY_SUBTLE = 0.35
VARY_STRONG = 0.7
REMIX_STRENGTH = 0.6
IMAGE_PROMPT_STRENGTH = 0.6
UPSCALE_STRENGTH = 0.3
UPSCALE_FACTOR = 2
UPSCALE_TILE = 1152  # 2048x2048 in 4 tiles of 1088 px
UPSCALE_OVERLAP = 128
ZOOM_FACTORS = (1.5, 2.0)
PAN_FRACTION = 0.5  # a pan adds half the image's side in that direction
MASK_OVERLAP = 32  # the mask reaches this far into the known image so the seam is redrawn
OUTPAINT_STRENGTH = 1.0


class Operation(StrEnum):
    """How a job was made from an image (stored in `jobs.operation` and the PNG)."""

    IMAGE = "image"  # /imagine with an uploaded image
    VARY = "vary"
    REMIX = "remix"
    UPSCALE = "upscale"
    ZOOM = "zoom"
    PAN = "pan"


class PanDirection(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


class Pipeline(StrEnum):
    """Which diffusers pipeline runs an edit (part of the batch key)."""

    TEXT = "text"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"


def _round16(value: float) -> int:
    return max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def _floor16(value: float) -> int:
    return max(SIZE_MULTIPLE, math.floor(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def check_strength(value: Any, name: str = "strength") -> float:
    """A strength from a user: a number from 0.05 to 1.0."""
    allowed = f"a number from {STRENGTH_MIN:g} to {STRENGTH_MAX:g}"
    if isinstance(value, bool):
        raise RequestError(name, value, allowed)
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise RequestError(name, value, allowed) from None
    if not math.isfinite(strength) or not STRENGTH_MIN <= strength <= STRENGTH_MAX:
        raise RequestError(name, value, allowed)
    return strength


def denoise_steps(steps: int, strength: float) -> int:
    """Steps an img2img/inpaint pass at `strength` really runs: the last `strength` share of the
    schedule (diffusers' `get_timesteps`: `steps - int(steps - steps * strength)`)."""
    start = int(max(steps - min(steps * strength, steps), 0))
    return steps - start


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height


@dataclass(frozen=True, slots=True)
class OutpaintLayout:
    """Where the source goes on the new canvas, and the region to generate (mask = 1)."""

    canvas: tuple[int, int]
    source: Box  # the source image, scaled to this box
    keep: Box  # inside `source`: kept as is (the mask is 0 here, 1 everywhere else)


def zoom_layout(width: int, height: int, factor: float) -> OutpaintLayout:
    """Zoom out: the canvas keeps the source's size and the source shrinks by `factor` into its
    centre (as Midjourney does), so a zoom costs what the original did and can be repeated."""
    if factor not in ZOOM_FACTORS:
        raise RequestError("zoom", factor, f"one of {', '.join(f'{z:g}' for z in ZOOM_FACTORS)}")
    inner_w, inner_h = _round16(width / factor), _round16(height / factor)
    x, y = _floor16((width - inner_w) / 2), _floor16((height - inner_h) / 2)
    source = Box(x, y, inner_w, inner_h)
    return OutpaintLayout((width, height), source, _inset(source, (width, height)))


def pan_layout(
    width: int,
    height: int,
    direction: PanDirection,
    max_width: int,
    max_height: int,
    max_megapixels: float,
) -> OutpaintLayout:
    """Pan: the canvas grows by half a side towards `direction`; if that exceeds the operator's
    size limits, the whole canvas (source included) is scaled down to fit them."""
    direction = PanDirection(direction)
    horizontal = direction in (PanDirection.LEFT, PanDirection.RIGHT)
    grow_w = _round16(width * PAN_FRACTION) if horizontal else 0
    grow_h = 0 if horizontal else _round16(height * PAN_FRACTION)
    canvas_w, canvas_h = width + grow_w, height + grow_h
    scale = min(
        1.0,
        max_width / canvas_w,
        max_height / canvas_h,
        math.sqrt(max_megapixels * 1024 * 1024 / (canvas_w * canvas_h)),
    )
    src_w, src_h = width, height
    if scale < 1.0:
        src_w, src_h = _floor16(width * scale), _floor16(height * scale)
        grow_w = _floor16(grow_w * scale) if grow_w else 0
        grow_h = _floor16(grow_h * scale) if grow_h else 0
        canvas_w, canvas_h = src_w + grow_w, src_h + grow_h
    x = grow_w if direction is PanDirection.LEFT else 0
    y = grow_h if direction is PanDirection.UP else 0
    source = Box(x, y, src_w, src_h)
    return OutpaintLayout((canvas_w, canvas_h), source, _inset(source, (canvas_w, canvas_h)))


def _inset(source: Box, canvas: tuple[int, int]) -> Box:
    """The part of `source` kept: `MASK_OVERLAP` in from each side that borders new canvas."""
    left = MASK_OVERLAP if source.x > 0 else 0
    top = MASK_OVERLAP if source.y > 0 else 0
    right = MASK_OVERLAP if source.right < canvas[0] else 0
    bottom = MASK_OVERLAP if source.bottom < canvas[1] else 0
    return Box(
        source.x + left,
        source.y + top,
        source.width - left - right,
        source.height - top - bottom,
    )


def upscale_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Twice the side; refused when the result would exceed the configured maximum side."""
    target = (width * UPSCALE_FACTOR, height * UPSCALE_FACTOR)
    if max(target) > max_side:
        raise RequestError(
            "upscale",
            f"{width}x{height}",
            f"an image whose doubled side stays within {max_side} px "
            f"(this one would be {target[0]}x{target[1]})",
        )
    return target


def _axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of tiles covering `length` with at least `overlap` between neighbours."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count / 16) * 16)
    step = (length - size) / (count - 1)
    starts = [min(length - size, _floor16(i * step) if i else 0) for i in range(count)]
    starts[-1] = length - size
    return [(start, size) for start in starts]


def tile_grid(width: int, height: int, tile: int, overlap: int = UPSCALE_OVERLAP) -> list[Box]:
    """Tiles of at most `tile` px a side, multiples of 16, overlapping by `overlap` or more,
    that cover a `width` x `height` image (row by row)."""
    if tile < 2 * overlap or tile % SIZE_MULTIPLE:
        raise RequestError("tile", tile, f"a multiple of 16 and at least {2 * overlap}")
    return [
        Box(x, y, w, h)
        for y, h in _axis_tiles(height, tile, overlap)
        for x, w in _axis_tiles(width, tile, overlap)
    ]


def edit_sizes(
    width: int,
    height: int,
    *,
    tile: int,
    max_width: int,
    max_height: int,
    max_megapixels: float,
    upscale_max_side: int,
) -> list[tuple[int, int]]:
    """The sizes the transformer runs at when a `width` x `height` image is upscaled (its
    tiles) or panned (the canvases); vary, remix and zoom keep the image's own size."""
    sizes: list[tuple[int, int]] = []
    if max(width, height) * UPSCALE_FACTOR <= upscale_max_side:
        big = upscale_size(width, height, upscale_max_side)
        sizes += [(box.width, box.height) for box in tile_grid(*big, tile)]
    for direction in PanDirection:
        layout = pan_layout(width, height, direction, max_width, max_height, max_megapixels)
        sizes.append(layout.canvas)
    return list(dict.fromkeys(sizes))


def fit_size(width: int, height: int, max_side: int, max_megapixels: float) -> tuple[int, int]:
    """An image prompt's output size: the upload's aspect ratio near one megapixel, within the
    operator's limits, multiples of 16."""
    area = min(1.0, max_megapixels) * 1024 * 1024
    scale = math.sqrt(area / (width * height))
    scale = min(scale, max_side / width, max_side / height)
    return _floor16(width * scale), _floor16(height * scale)


@dataclass(frozen=True, slots=True)
class ImageEdit:
    """How a job starts from an image: the operation, its parameters and the source.

    `source_sha256` names the source image (a stored upload or a parent job's image, kept
    content-addressed with the job); `source` holds its bytes on the way to the GPU and is never
    stored in the parameters. A remix from scratch has no source: it runs text-to-image.
    """

    operation: Operation
    source_sha256: str | None = None
    strength: float | None = None
    parent: str | None = None  # the parent job's public id
    parent_index: int | None = None  # which image of the parent
    zoom: float | None = None
    pan: PanDirection | None = None
    tile: int | None = None
    # Outpainting: the source's place on the canvas (x, y, width, height), decided when the job
    # is made (it depends on the operator's size limits) and stored so the job reproduces.
    box: tuple[int, int, int, int] | None = None
    source: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", Operation(self.operation))
        if self.pan is not None:
            object.__setattr__(self, "pan", PanDirection(self.pan))
        if self.strength is not None:
            object.__setattr__(self, "strength", check_strength(self.strength))
        if self.source_sha256 is None:
            if self.operation is not Operation.REMIX:
                raise RequestError("image", None, f"a source image for {self.operation}")
            return
        if self.operation is Operation.ZOOM and self.zoom not in ZOOM_FACTORS:
            raise RequestError("zoom", self.zoom, " or ".join(f"{z:g}" for z in ZOOM_FACTORS))
        if self.operation is Operation.PAN and self.pan is None:
            raise RequestError("pan", self.pan, ", ".join(PanDirection))
        if self.pipeline is Pipeline.INPAINT:
            if self.box is None or len(self.box) != 4 or any(v % SIZE_MULTIPLE for v in self.box):
                raise RequestError("box", self.box, "x, y, width, height in multiples of 16")
            object.__setattr__(self, "box", tuple(int(v) for v in self.box))
        if self.operation is Operation.UPSCALE and (self.tile is None or self.tile < 256):
            raise RequestError("tile", self.tile, "a multiple of 16 from 256")
        if self.pipeline in (Pipeline.IMG2IMG, Pipeline.UPSCALE) and self.strength is None:
            raise RequestError("strength", None, f"a number for {self.operation}")

    @property
    def pipeline(self) -> Pipeline:
        if self.source_sha256 is None:
            return Pipeline.TEXT
        if self.operation in (Operation.ZOOM, Operation.PAN):
            return Pipeline.INPAINT
        if self.operation is Operation.UPSCALE:
            return Pipeline.UPSCALE
        return Pipeline.IMG2IMG

    @property
    def effective_strength(self) -> float:
        """The strength the pipeline runs at (outpainting draws the new border from noise)."""
        if self.pipeline is Pipeline.INPAINT:
            return OUTPAINT_STRENGTH
        return self.strength if self.strength is not None else 1.0

    def with_source(self, data: bytes) -> ImageEdit:
        return replace(self, source=data)

    def layout(self, width: int, height: int) -> OutpaintLayout:
        """The outpainting layout on a `width` x `height` canvas (zoom and pan only)."""
        if self.box is None:
            raise ValueError(f"{self.operation} has no layout")
        source = Box(*self.box)
        return OutpaintLayout((width, height), source, _inset(source, (width, height)))

    def batch_key(self) -> tuple[Any, ...]:
        """Edits that can share one pipeline call: same pipeline and same schedule."""
        if self.pipeline is Pipeline.TEXT:
            return (Pipeline.TEXT,)
        return (self.pipeline, self.effective_strength, self.tile)

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"operation": str(self.operation)}
        for name in ("source_sha256", "strength", "parent", "parent_index", "zoom", "tile"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.box is not None:
            params["box"] = list(self.box)
        if self.pan is not None:
            params["pan"] = str(self.pan)
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ImageEdit:
        allowed = {
            "operation",
            "source_sha256",
            "strength",
            "parent",
            "parent_index",
            "zoom",
            "pan",
            "tile",
            "box",
        }
        return cls(**{k: v for k, v in params.items() if k in allowed})

    def describe(self) -> str:
        """A few words for people: 'vary (strength 0.35)', 'pan left', 'zoom out x2'."""
        match self.operation:
            case Operation.ZOOM:
                return f"zoom out ×{self.zoom:g}"
            case Operation.PAN:
                return f"pan {self.pan}"
            case Operation.UPSCALE:
                return "upscale ×2"
            case Operation.REMIX if self.source_sha256 is None:
                return "remix (same seed)"
        return f"{self.operation} (strength {self.effective_strength:g})"

    def lineage(self) -> str:
        """Where the image came from, for people: "vary (strength 0.35) of `abc123`" (with
        "image 2" when it was not the parent's first), or "... from an uploaded image"."""
        described = self.describe()
        if self.parent:
            image = f" image {self.parent_index + 1}" if self.parent_index else ""
            return f"{described} of `{self.parent}`{image}"
        if self.operation == Operation.IMAGE:
            return f"{described} from an uploaded image"
        return described
