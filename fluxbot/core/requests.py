"""The validated request that travels from a command to a GPU, and what comes back.

Validation lives here so the CLI, the bot and the store all refuse bad input the same way: a
`RequestError` names the field, the value and what is allowed, before any GPU work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fluxbot.core.edits import ImageEdit, Pipeline, denoise_steps, tile_grid
from fluxbot.core.styles import LoraSpec
from fluxbot.core.validation import SIZE_MULTIPLE, RequestError

if TYPE_CHECKING:
    from PIL import Image


SEED_MIN = 0
SEED_MAX = 2**32 - 1
MAX_COUNT = 4
MAX_PROMPT_CHARS = 6000
SCHNELL_STEPS = 4
SCHNELL_SEQUENCE_LENGTH = 256
ONE_MEGAPIXEL = 1024 * 1024
DEFAULT_TRUE_CFG = 4.0

ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "21:9": (21, 9),
}


def _round16(value: float) -> int:
    return max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def aspect_size(aspect: str, megapixels: float = 1.0) -> tuple[int, int]:
    """Width and height (multiples of 16) of an aspect preset near the given megapixels."""
    if aspect not in ASPECT_RATIOS:
        raise RequestError("aspect", aspect, f"one of {', '.join(ASPECT_RATIOS)}")
    rw, rh = ASPECT_RATIOS[aspect]
    area = megapixels * ONE_MEGAPIXEL
    height = math.sqrt(area * rh / rw)
    return _round16(height * rw / rh), _round16(height)


ASPECT_PRESETS: dict[str, tuple[int, int]] = {name: aspect_size(name) for name in ASPECT_RATIOS}


class JobKind(StrEnum):
    IMAGINE = "imagine"
    REROLL = "reroll"
    VARIATION = "variation"  # same request, new seed (🎲)
    ANIMATE = "animate"
    EDIT = "edit"  # made from another job's image (`jobs.operation` says how)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """The operator's bounds on a request (from settings)."""

    min_size: int = 256
    max_width: int = 2048
    max_height: int = 2048
    max_megapixels: float = 2.0
    max_steps: int = 8
    # Upscales refine in tiles, so they answer to their own limit instead of the megapixels.
    upscale_max_side: int = 4096

    @property
    def steps_allowed(self) -> str:
        """The one sentence for a steps value out of range, wherever it is checked."""
        return f"a whole number from 1 to {self.max_steps}"

    @classmethod
    def from_settings(cls, settings: Any) -> SizeLimits:
        return cls(
            min_size=settings.min_size,
            max_width=settings.max_width,
            max_height=settings.max_height,
            max_megapixels=settings.max_megapixels,
            max_steps=settings.max_steps,
            upscale_max_side=settings.upscale_max_side,
        )


MIN_FPS = 0.5
MAX_FPS = 50.0


@dataclass(frozen=True, slots=True)
class AnimationSpec:
    """A GIF morphing from `seed` (the request's) to `seed_to` over `frames` frames."""

    frames: int = 12
    seed_to: int = 0
    prompt_to: str | None = None
    fps: float = 8.0

    def __post_init__(self) -> None:
        if not 2 <= self.frames <= 24:
            raise RequestError("frames", self.frames, "a whole number from 2 to 24")
        _check_seed("seed_to", self.seed_to)
        # GIF frame delays are whole centiseconds and viewers slow anything under 2 down.
        if isinstance(self.fps, bool) or not MIN_FPS <= self.fps <= MAX_FPS:
            raise RequestError("fps", self.fps, f"a number from {MIN_FPS:g} to {MAX_FPS:g}")


def _check_seed(name: str, seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
        raise RequestError(name, seed, f"a whole number from {SEED_MIN} to {SEED_MAX}")


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything that decides the pixels, validated on creation.

    Images i = 0..count-1 use seed `seed + i` (wrapping at 2**32), one CPU generator each, so any
    image of a batch can be made again alone.
    """

    prompt: str
    seed: int
    width: int = 1024
    height: int = 1024
    steps: int = SCHNELL_STEPS
    count: int = 1
    negative: str = ""
    true_cfg_scale: float = DEFAULT_TRUE_CFG
    guidance_scale: float = 0.0
    max_sequence_length: int = SCHNELL_SEQUENCE_LENGTH
    animation: AnimationSpec | None = None
    # The style's name (for people: listings, the PNG) and its LoRA (for the GPU); the style's
    # template and trigger words are already in `prompt`.
    style: str = ""
    lora: LoraSpec | None = None
    edit: ImageEdit | None = None  # set when the job starts from an image (fluxbot.core.edits)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestError("prompt", self.prompt, "a non-empty text")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise RequestError("prompt", self.prompt, f"at most {MAX_PROMPT_CHARS} characters")
        if len(self.negative) > MAX_PROMPT_CHARS:
            raise RequestError("negative", self.negative, f"at most {MAX_PROMPT_CHARS} characters")
        _check_seed("seed", self.seed)
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RequestError(name, value, "a positive multiple of 16")
            if value % SIZE_MULTIPLE:
                raise RequestError(name, value, f"a multiple of {SIZE_MULTIPLE}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 50:
            raise RequestError("steps", self.steps, "a whole number from 1 to 50")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_COUNT:
            raise RequestError("count", self.count, f"a whole number from 1 to {MAX_COUNT}")
        if not 1.0 <= self.true_cfg_scale <= 20.0:
            raise RequestError("true_cfg_scale", self.true_cfg_scale, "a number from 1 to 20")
        if not 1 <= self.max_sequence_length <= 512:
            raise RequestError("max_sequence_length", self.max_sequence_length, "1 to 512")
        if self.edit is not None and self.animation is not None:
            raise RequestError("animation", "with an image", "text-to-image only")

    def check_limits(self, limits: SizeLimits) -> GenerationRequest:
        """Refuse sizes and steps beyond the operator's limits; returns self for chaining."""
        if self.steps > limits.max_steps:
            raise RequestError("steps", self.steps, limits.steps_allowed)
        if self.is_upscale:
            top = limits.upscale_max_side
            if max(self.width, self.height) > top:
                raise RequestError(
                    "size", f"{self.width}x{self.height}", f"an upscale of at most {top} px a side"
                )
            return self
        for name, value, top in (
            ("width", self.width, limits.max_width),
            ("height", self.height, limits.max_height),
        ):
            if not limits.min_size <= value <= top:
                raise RequestError(
                    name, value, f"a multiple of {SIZE_MULTIPLE} from {limits.min_size} to {top}"
                )
        megapixels = self.width * self.height / ONE_MEGAPIXEL
        if megapixels > limits.max_megapixels:
            raise RequestError(
                "size",
                f"{self.width}x{self.height}",
                f"at most {limits.max_megapixels:g} megapixels",
            )
        return self

    @property
    def seeds(self) -> list[int]:
        """The seed of each image in the batch."""
        return [(self.seed + i) % (SEED_MAX + 1) for i in range(self.count)]

    @property
    def uses_true_cfg(self) -> bool:
        """A negative prompt runs the transformer twice per step (true CFG)."""
        return bool(self.negative.strip()) and self.true_cfg_scale > 1.0

    @property
    def megapixels(self) -> float:
        return self.width * self.height / ONE_MEGAPIXEL

    @property
    def image_count(self) -> int:
        """Images the GPU produces: frames for an animation, else count."""
        return self.animation.frames if self.animation else self.count

    def with_seed(self, seed: int) -> GenerationRequest:
        return replace(self, seed=seed)

    @property
    def is_upscale(self) -> bool:
        return self.edit is not None and self.edit.pipeline is Pipeline.UPSCALE

    @property
    def denoise_steps(self) -> int:
        """Steps the transformer really runs per image: an edit at strength s runs its share."""
        if self.edit is None or self.edit.source_sha256 is None:
            return self.steps
        return denoise_steps(self.steps, self.edit.effective_strength)

    @property
    def tiles(self) -> int:
        """Separate pipeline passes per image: the tiles of an upscale, else 1."""
        if not self.is_upscale:
            return 1
        assert self.edit is not None and self.edit.tile is not None
        return len(tile_grid(self.width, self.height, self.edit.tile))

    @property
    def pass_megapixels(self) -> float:
        """Megapixels one transformer pass works on (a tile's, for an upscale)."""
        if not self.is_upscale:
            return self.megapixels
        assert self.edit is not None and self.edit.tile is not None
        box = tile_grid(self.width, self.height, self.edit.tile)[0]
        return box.width * box.height / ONE_MEGAPIXEL

    @property
    def transformer_passes(self) -> int:
        """Transformer calls a request costs: images x real steps x tiles, twice with true CFG."""
        cfg = 2 if self.uses_true_cfg else 1
        return self.image_count * self.denoise_steps * self.tiles * cfg

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batched pipeline call."""
        return (
            self.width,
            self.height,
            self.steps,
            self.guidance_scale,
            self.max_sequence_length,
            self.uses_true_cfg,
            self.animation is None,
            self.lora,  # one LoRA per pipeline call: jobs batch only with the same style
            None if self.edit is None else self.edit.batch_key(),
        )

    def to_params(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the job, written into each PNG)."""
        params: dict[str, Any] = {
            "prompt": self.prompt,
            "negative": self.negative,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "count": self.count,
            "guidance_scale": self.guidance_scale,
            "max_sequence_length": self.max_sequence_length,
        }
        if self.negative:
            params["true_cfg_scale"] = self.true_cfg_scale
        if self.style:
            params["style"] = self.style
        if self.lora is not None:
            params["lora"] = self.lora.to_params()
        if self.animation:
            params["animation"] = {
                "frames": self.animation.frames,
                "seed_to": self.animation.seed_to,
                "prompt_to": self.animation.prompt_to,
                "fps": self.animation.fps,
            }
        if self.edit:
            params["edit"] = self.edit.to_params()
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GenerationRequest:
        """Inverse of `to_params` (used to re-run a stored job)."""
        data = dict(params)
        anim = data.pop("animation", None)
        lora = data.pop("lora", None)
        edit = data.pop("edit", None)
        allowed = {
            "prompt",
            "negative",
            "seed",
            "width",
            "height",
            "steps",
            "count",
            "guidance_scale",
            "max_sequence_length",
            "true_cfg_scale",
            "style",
        }
        kwargs = {k: v for k, v in data.items() if k in allowed}
        if lora:
            kwargs["lora"] = LoraSpec.from_params(lora)
        if anim:
            kwargs["animation"] = AnimationSpec(**anim)
        if edit:
            kwargs["edit"] = ImageEdit.from_params(edit)
        return cls(**kwargs)


@dataclass(slots=True)
class StageTimings:
    """Seconds spent in each stage of one job (the job log line and the benchmark use these)."""

    queued: float = 0.0
    text_encode: float = 0.0
    denoise: float = 0.0
    decode: float = 0.0
    image_encode: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "queued": self.queued,
            "text_encode": self.text_encode,
            "denoise": self.denoise,
            "decode": self.decode,
            "image_encode": self.image_encode,
            "total": self.total,
        }


@dataclass(slots=True)
class GenerationResult:
    """What the pipeline made: one PIL image per seed, plus where the time went."""

    request: GenerationRequest
    images: list[Image.Image]
    seeds: list[int]
    device: str
    timings: StageTimings = field(default_factory=StageTimings)
    notes: list[str] = field(default_factory=list)
    path: str = "eager"  # which forms of the models made it: "eager" or "compiled"
