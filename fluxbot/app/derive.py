"""Jobs made from an image: a parent job's result (vary, remix, upscale, zoom, pan) or an
upload (/imagine with an image). One path for the bot and the CLI.

Builds the validated request with its `ImageEdit` (operation, parameters, source hash and
bytes) and decides lineage and privacy: only someone who may see the parent may derive from
it, and a private parent gives private children.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from fluxbot.app.access import may_view
from fluxbot.app.compose import RequestComposer
from fluxbot.app.uploads import Upload
from fluxbot.core.edits import (
    IMAGE_PROMPT_STRENGTH,
    REMIX_STRENGTH,
    UPSCALE_STRENGTH,
    VARY_SUBTLE,
    Box,
    ImageEdit,
    Operation,
    PanDirection,
    check_strength,
    fit_size,
    pan_layout,
    upscale_size,
    zoom_layout,
)
from fluxbot.core.errors import NotAllowed
from fluxbot.core.requests import GenerationRequest, JobKind, JobStatus, RequestError, SizeLimits
from fluxbot.core.seeds import random_seed
from fluxbot.store import Store
from fluxbot.store.models import JobRow


@dataclass(frozen=True, slots=True)
class ImageJob:
    """A job ready to submit: the request (source bytes attached), its lineage and privacy."""

    request: GenerationRequest
    kind: JobKind
    parent_id: int | None
    private: bool
    source: Upload | None  # kept with the job before it is queued (None: text remix)


def upload_from_png(data: bytes) -> Upload:
    """A stored result image as a source (it was checked when it was made)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        fmt = (image.format or "png").lower()
    return Upload(data=data, format=fmt, width=width, height=height)


class Deriver:
    """Makes image jobs under one operator's limits and composer."""

    def __init__(
        self, store: Store | None, composer: RequestComposer, *, upscale_tile: int = 1152
    ) -> None:
        self.store = store
        self.composer = composer
        self.upscale_tile = upscale_tile

    @property
    def limits(self) -> SizeLimits:
        return self.composer.limits

    async def parent_image(self, parent: JobRow, index: int) -> Upload:
        """The bytes of image `index` of a finished job."""
        if parent.status is not JobStatus.DONE or not parent.images:
            raise RequestError("job", parent.public_id, "a finished job with images")
        if not 0 <= index < len(parent.images):
            raise RequestError("image", index + 1, f"1 to {len(parent.images)}")
        image = parent.images[index]
        if self.store is None:
            raise RuntimeError("a Deriver without a store cannot read jobs")
        if image.format not in ("png", "jpeg", "webp"):
            raise RequestError("job", parent.public_id, "a still image (not an animation)")
        data = await asyncio.to_thread(self.store.files.read, image.path)
        return upload_from_png(data)

    async def from_job(
        self,
        parent: JobRow,
        actor_id: int,
        operation: Operation,
        *,
        index: int = 0,
        admin: bool = False,
        seed: int | None = None,
        strength: float | None = None,
        zoom: float | None = None,
        pan: PanDirection | str | None = None,
        prompt: str | None = None,
        from_scratch: bool = False,
        strict: bool = True,
    ) -> ImageJob:
        """A job made from image `index` of `parent`; raises NotAllowed or RequestError."""
        if not may_view(parent, actor_id, admin=admin):
            raise NotAllowed(f"Job `{parent.public_id}` is private: only its owner can use it.")
        source = await self.parent_image(parent, index)
        request, upload = self.build(
            source,
            parent.request,
            parent.images[index].seed,
            operation,
            parent=parent.public_id,
            index=index,
            seed=seed,
            strength=strength,
            zoom=zoom,
            pan=pan,
            prompt=prompt,
            from_scratch=from_scratch,
            strict=strict,
        )
        return ImageJob(request, JobKind.EDIT, parent.id, bool(parent.private), upload)

    def build(
        self,
        source: Upload,
        base: GenerationRequest,
        source_seed: int,
        operation: Operation | str,
        *,
        parent: str | None = None,
        index: int | None = None,
        seed: int | None = None,
        strength: float | None = None,
        zoom: float | None = None,
        pan: PanDirection | str | None = None,
        prompt: str | None = None,
        from_scratch: bool = False,
        strict: bool = True,
    ) -> tuple[GenerationRequest, Upload | None]:
        """The request for `operation` on `source` (made by `base` with `source_seed`); also
        the image to keep with the job (None for a remix from scratch)."""
        if operation not in tuple(Operation) or operation == Operation.IMAGE:
            raise RequestError("operation", str(operation), "vary, remix, upscale, zoom or pan")
        operation = Operation(operation)
        parent_seed = source_seed
        width, height = self.working_size(source)
        common: dict[str, Any] = {
            "source_sha256": source.sha256,
            "parent": parent,
            "parent_index": index,
            "source": source.data,
        }
        upload: Upload | None = source
        match operation:
            case Operation.VARY:
                edit = ImageEdit(operation, strength=_strength(strength, VARY_SUBTLE), **common)
            case Operation.REMIX if from_scratch:
                seed = parent_seed if seed is None else seed
                edit = ImageEdit(operation, parent=parent, parent_index=index)
                upload = None
            case Operation.REMIX:
                seed = parent_seed if seed is None else seed
                edit = ImageEdit(operation, strength=_strength(strength, REMIX_STRENGTH), **common)
            case Operation.UPSCALE:
                seed = parent_seed if seed is None else seed
                if source.width % 16 == 0 and source.height % 16 == 0:
                    width, height = source.width, source.height  # an upscale, upscaled again
                width, height = upscale_size(width, height, self.limits.upscale_max_side)
                edit = ImageEdit(
                    operation,
                    strength=_strength(strength, UPSCALE_STRENGTH),
                    tile=self.upscale_tile,
                    **common,
                )
            case Operation.ZOOM:
                factor = 2.0 if zoom is None else float(zoom)
                layout = zoom_layout(width, height, factor)
                edit = ImageEdit(operation, zoom=factor, box=_box(layout.source), **common)
            case Operation.PAN:
                if pan not in tuple(PanDirection):
                    raise RequestError("pan", pan, ", ".join(PanDirection))
                direction = PanDirection(pan)
                layout = pan_layout(
                    width,
                    height,
                    direction,
                    self.limits.max_width,
                    self.limits.max_height,
                    self.limits.max_megapixels,
                )
                width, height = layout.canvas
                edit = ImageEdit(operation, pan=direction, box=_box(layout.source), **common)
            case _:
                raise AssertionError(operation)
        fields: dict[str, object] = {}
        if operation is Operation.REMIX and prompt is not None:
            draft = self.composer.draft(
                prompt,
                negative=base.negative or None,
                steps=base.steps,
                width=width,
                height=height,
                strict=strict,
            )
            fields = dict(draft.fields)
        request = GenerationRequest(
            prompt=str(fields.get("prompt", base.prompt)),
            negative=str(fields.get("negative", base.negative)),
            seed=random_seed() if seed is None else seed,
            width=width,
            height=height,
            steps=base.steps,
            guidance_scale=base.guidance_scale,
            max_sequence_length=base.max_sequence_length,
            true_cfg_scale=base.true_cfg_scale,
            style=base.style,  # a styled image keeps its style (its LoRA) when derived
            lora=base.lora,
            edit=edit,
        ).check_limits(self.limits)
        return request, upload

    def working_size(self, source: Upload) -> tuple[int, int]:
        """The source's own size when the pipeline can run it (a result of ours always can),
        else its aspect ratio fitted to the limits in multiples of 16 (an outside file)."""
        limits = self.limits
        w, h = source.width, source.height
        if (
            w % 16 == 0
            and h % 16 == 0
            and limits.min_size <= min(w, h)
            and w <= limits.max_width
            and h <= limits.max_height
            and w * h <= limits.max_megapixels * 1024 * 1024
        ):
            return w, h
        return fit_size(w, h, min(limits.max_width, limits.max_height), limits.max_megapixels)

    def from_upload(
        self,
        upload: Upload,
        request: GenerationRequest,
        strength: float | None = None,
    ) -> GenerationRequest:
        """An /imagine request turned into img2img from `upload`, at the upload's aspect."""
        width, height = fit_size(
            upload.width,
            upload.height,
            min(self.limits.max_width, self.limits.max_height),
            self.limits.max_megapixels,
        )
        edit = ImageEdit(
            Operation.IMAGE,
            source_sha256=upload.sha256,
            strength=check_strength(IMAGE_PROMPT_STRENGTH if strength is None else strength),
            source=upload.data,
        )
        return replace(request, width=width, height=height, edit=edit).check_limits(self.limits)


def _box(box: Box) -> tuple[int, int, int, int]:
    return (box.x, box.y, box.width, box.height)


def _strength(value: float | None, default: float) -> float:
    return check_strength(default if value is None else value)
