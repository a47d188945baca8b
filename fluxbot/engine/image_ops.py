"""Jobs that start from an image: img2img (vary, remix, image prompts), tiled upscale, and
outpainting (zoom out, pan) with diffusers' FluxImg2ImgPipeline and FluxInpaintPipeline.

Both pipelines are built with `from_pipe` from the runner's loaded FluxPipeline: they share its
modules, so the weights exist once per replica and whatever the memory and speed profiles did
to them (placement, offload hooks, fp8 linears, compiled blocks) holds for every pipeline.
Prompt embeddings come from the runner's cache (and its text-encoder graphs); the latents are
decoded by the runner, as for text jobs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from fluxbot.core.edits import MASK_OVERLAP, Box, ImageEdit, Pipeline, tile_grid
from fluxbot.core.requests import GenerationRequest, GenerationResult, StageTimings
from fluxbot.core.seeds import advance_seed, make_generators
from fluxbot.devices.memory import LighterSettings
from fluxbot.engine.blending import TileBlend, paste_back
from fluxbot.engine.compiled import ShapeKey
from fluxbot.engine.memory_profiles import pin_execution_device
from fluxbot.engine.pixels import image_tensor, pil_images

StepCallback = Callable[[Any], None]


class RunnerParts(Protocol):
    """What the image jobs use of their `FluxRunner` (fluxbot.engine.pipeline builds this
    module's `ImageOps` with itself): the loaded pipeline, embeddings, progress and decoding."""

    pipe: Any
    device: str

    def _check_cancel(self, cancel: threading.Event | None) -> None: ...

    def _request_embeds(self, request: GenerationRequest) -> tuple[torch.Tensor, torch.Tensor]: ...

    def _sync(self) -> None: ...

    def _use_compiled(self, key: ShapeKey) -> bool: ...

    def _path(self, compiled: bool) -> AbstractContextManager[None]: ...

    def _step_callback(
        self,
        request: GenerationRequest,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        want_preview: bool,
        *,
        offset: int = 0,
        total: int | None = None,
        size: tuple[int, int] | None = None,
    ) -> Callable[..., dict[str, Any]]: ...

    def _decode_pixels(
        self, packed: torch.Tensor, width: int, height: int, lighter: LighterSettings | None
    ) -> torch.Tensor: ...


log = logging.getLogger(__name__)

DIFFUSERS_LATENT_CHANNELS = 16
FILL_COLOUR = (127, 127, 127)  # the new border before noise covers it (strength 1.0)


SOURCE_CACHE = 4
"""Decoded sources kept (by a hash of their bytes): the buttons under one result all start
from its image, and decoding a 1024² PNG took 23 ms of the device thread on a 2-core machine."""
_sources: OrderedDict[bytes, Image.Image] = OrderedDict()
_sources_lock = threading.Lock()


def load_source(edit: ImageEdit) -> Image.Image:
    """The edit's source image as RGB (bytes checked on upload; here they must be present).
    Shared with later jobs of the same source: read it, never draw on it."""
    if not edit.source:
        raise ValueError(f"the source image {edit.source_sha256} was not loaded")
    key = hashlib.blake2b(edit.source, digest_size=16).digest()  # of the bytes themselves
    with _sources_lock:
        if key in _sources:
            _sources.move_to_end(key)
            return _sources[key]
    with Image.open(io.BytesIO(edit.source)) as opened:
        opened.load()
        image = opened.convert("RGB")
    with _sources_lock:
        _sources[key] = image
        while len(_sources) > SOURCE_CACHE:
            _sources.popitem(last=False)
    return image


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def pixels(images: Sequence[Image.Image], device: torch.device | str) -> torch.Tensor:
    """Pictures as diffusers' preprocessing takes a tensor: N x 3 x H x W in [0, 1], float32,
    made on the device from the uint8 pixels (the same numbers as its own conversion of the
    pictures; that ran on the device thread's CPU, ~50 ms for one 1024² picture on a 2-core
    machine). The layout stays channels-last, as diffusers' conversion leaves it."""
    array = np.stack([np.asarray(image.convert("RGB")) for image in images])
    return torch.from_numpy(array).to(device).permute(0, 3, 1, 2).float() / 255.0


def outpaint_inputs(request: GenerationRequest) -> tuple[Image.Image, Image.Image]:
    """(canvas with the source placed on it, mask (white = generate))."""
    edit = request.edit
    assert edit is not None
    layout = edit.layout(request.width, request.height)
    box, keep = layout.source, layout.keep
    placed = resized(load_source(edit), (box.width, box.height))
    canvas = Image.new("RGB", layout.canvas, FILL_COLOUR)
    canvas.paste(placed, (box.x, box.y))
    mask = Image.new("L", layout.canvas, 255)
    mask.paste(0, (keep.x, keep.y, keep.right, keep.bottom))
    return canvas, mask


def share_components(cls: Any, base: Any) -> Any:
    """A `cls` pipeline over `base`'s very modules: diffusers' `from_pipe` without its final
    `.to(dtype)`, which would cast fp8 weights (the `fast` and `fp8` profiles) back to bf16 in
    place and trip over offload hooks. Only the scheduler is new: img2img moves its start."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    components = {k: v for k, v in base.components.items() if k in accepted}
    components["scheduler"] = type(base.scheduler).from_config(base.scheduler.config)
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ImageOps:
    """The image pipelines of one runner, built on first use (from_pipe: no new weights)."""

    def __init__(self, runner: RunnerParts) -> None:
        self._runner = runner
        self._pipes: dict[Pipeline, Any] = {}

    def pipeline(self, kind: Pipeline) -> Any:
        pipe = self._pipes.get(kind)
        if pipe is None:
            from diffusers import FluxImg2ImgPipeline, FluxInpaintPipeline

            cls = FluxInpaintPipeline if kind is Pipeline.INPAINT else FluxImg2ImgPipeline
            if kind is Pipeline.UPSCALE and Pipeline.IMG2IMG in self._pipes:
                pipe = self._pipes[Pipeline.IMG2IMG]
            else:
                pipe = share_components(cls, self._runner.pipe)
                pin_execution_device(pipe, torch.device(self._runner.device))
            self._pipes[kind] = pipe
        return pipe

    def shares_weights(self) -> bool:
        """Whether every built pipeline uses the runner's own module objects."""
        base = self._runner.pipe.components
        return bool(self._pipes) and all(
            pipe.components[name] is module
            for pipe in self._pipes.values()
            for name, module in base.items()
            if isinstance(module, torch.nn.Module)
        )

    # -- running ----------------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        lighter: LighterSettings | None,
        want_preview: bool,
    ) -> list[GenerationResult]:
        """Run requests of one batch key (same pipeline, size and strength)."""
        edit = requests[0].edit
        assert edit is not None
        if edit.pipeline is Pipeline.UPSCALE:
            return [self._upscale(r, on_step, cancel, lighter, want_preview) for r in requests]
        return self._denoise_batch(requests, edit.pipeline, on_step, cancel, lighter, want_preview)

    def _denoise_batch(
        self,
        requests: Sequence[GenerationRequest],
        kind: Pipeline,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        lighter: LighterSettings | None,
        want_preview: bool,
    ) -> list[GenerationResult]:
        runner = self._runner
        first = requests[0]
        runner._check_cancel(cancel)
        started = time.perf_counter()
        embeds, pooled, inputs, generators = [], [], [], []
        masks: list[Image.Image | None] = []
        kept: list[torch.Tensor] = []  # outpainting: each image's kept pixels, on the device
        mask: Image.Image | None
        keep = None
        if kind is Pipeline.INPAINT:
            assert first.edit is not None
            keep = first.edit.layout(first.width, first.height).keep
        for request in requests:
            e, p = runner._request_embeds(request)
            embeds.append(e)
            pooled.append(p)
            if kind is Pipeline.INPAINT:
                assert keep is not None
                canvas, mask = outpaint_inputs(request)
                region = np.asarray(canvas)[keep.y : keep.bottom, keep.x : keep.right]
                kept += [image_tensor(region, runner.device)] * request.image_count
            else:
                assert request.edit is not None
                canvas = resized(load_source(request.edit), (request.width, request.height))
                mask = None
            inputs += [canvas] * request.image_count
            masks += [mask] * request.image_count
            generators.extend(make_generators(request.seeds))
        runner._sync()
        text_done = time.perf_counter()
        packed, compiled = self._call(
            kind,
            first,
            images=inputs,
            masks=masks if kind is Pipeline.INPAINT else None,
            prompt_embeds=torch.cat(embeds),
            pooled=torch.cat(pooled),
            generators=generators,
            size=(first.width, first.height),
            callback=runner._step_callback(first, on_step, cancel, want_preview),
        )
        runner._check_cancel(cancel)
        runner._sync()
        denoise_done = time.perf_counter()
        with runner._path(compiled):
            decoded = runner._decode_pixels(packed, first.width, first.height, lighter)
        if kind is Pipeline.INPAINT:
            assert keep is not None
            decoded = torch.stack(
                [
                    paste_back(image, original, keep, MASK_OVERLAP)
                    for image, original in zip(decoded, kept, strict=True)
                ]
            )
        images = pil_images(decoded)
        runner._sync()
        decode_done = time.perf_counter()
        results = []
        offset = 0
        for request in requests:
            share = request.image_count / len(images)
            timings = StageTimings(
                text_encode=(text_done - started) * share,
                denoise=(denoise_done - text_done) * share,
                decode=(decode_done - denoise_done) * share,
            )
            own = images[offset : offset + request.image_count]
            offset += request.image_count
            path = "compiled" if compiled else "eager"
            results.append(
                GenerationResult(
                    request, own, list(request.seeds), runner.device, timings=timings, path=path
                )
            )
        return results

    def _call(
        self,
        kind: Pipeline,
        request: GenerationRequest,
        *,
        images: list[Image.Image],
        masks: list[Image.Image | None] | None,
        prompt_embeds: torch.Tensor,
        pooled: torch.Tensor,
        generators: list[torch.Generator],
        size: tuple[int, int],
        callback: Callable[..., dict[str, Any]],
    ) -> tuple[torch.Tensor, bool]:
        """One diffusers call that stops at the latents (the runner decodes them, on the same
        path); and whether it ran the compiled forms (its shape compiled, as for text jobs)."""
        assert request.edit is not None
        pipe = self.pipeline(kind)
        width, height = size
        compiled = self._runner._use_compiled(
            ShapeKey(len(images), width, height, request.max_sequence_length)
        )
        extra: dict[str, Any] = {}
        if kind is Pipeline.INPAINT:
            extra["mask_image"] = masks
            # FLUX.1's inpainting keeps the known region by blending its noised latents at each
            # step; the encoded masked image is only used by the Fill model. Handing zeros in its
            # place skips a VAE encode per image that stock diffusers runs for nothing (diffusers
            # recognises latents by FLUX's 16 channels, so smaller test VAEs still encode).
            channels = pipe.vae.config.latent_channels
            if channels == DIFFUSERS_LATENT_CHANNELS:
                factor = pipe.vae_scale_factor
                extra["masked_image_latents"] = torch.zeros(
                    (1, channels, height // factor, width // factor),
                    dtype=prompt_embeds.dtype,
                    device=prompt_embeds.device,
                )
        with self._runner._path(compiled), torch.inference_mode():
            packed = pipe(
                image=pixels(images, prompt_embeds.device),
                prompt_embeds=prompt_embeds,
                pooled_prompt_embeds=pooled,
                width=width,
                height=height,
                strength=request.edit.effective_strength,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale,
                max_sequence_length=request.max_sequence_length,
                generator=generators,
                output_type="latent",
                callback_on_step_end=callback,
                **extra,
            ).images
        return packed, compiled

    def _upscale(
        self,
        request: GenerationRequest,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        lighter: LighterSettings | None,
        want_preview: bool,
    ) -> GenerationResult:
        """Resize to the target, then refine tile by tile with a low-strength img2img pass and
        blend the tiles' overlaps: any target size fits the memory one tile needs."""
        runner = self._runner
        edit = request.edit
        assert edit is not None and edit.tile is not None
        runner._check_cancel(cancel)
        started = time.perf_counter()
        canvas = (request.width, request.height)
        big = resized(load_source(edit), canvas)
        tiles = tile_grid(request.width, request.height, edit.tile)
        embeds, pooled = runner._request_embeds(request)
        runner._sync()
        text_done = time.perf_counter()
        steps_each = request.denoise_steps
        total = steps_each * len(tiles)
        blend = TileBlend(request.width, request.height, _tile_ramp(tiles), runner.device)
        denoise_s = decode_s = 0.0
        paths: set[bool] = set()
        for number, tile in enumerate(tiles):
            crop = big.crop((tile.x, tile.y, tile.right, tile.bottom))
            # Each tile its own noise (seed + tile number), the same on every run.
            generator = make_generators([advance_seed(request.seed, number)])
            callback = runner._step_callback(
                request,
                on_step,
                cancel,
                want_preview,
                offset=number * steps_each,
                total=total,
                size=(tile.width, tile.height),
            )
            tile_started = time.perf_counter()
            packed, compiled = self._call(
                Pipeline.UPSCALE,
                request,
                images=[crop],
                masks=None,
                prompt_embeds=embeds[:1],
                pooled=pooled[:1],
                generators=generator,
                size=(tile.width, tile.height),
                callback=callback,
            )
            runner._check_cancel(cancel)
            runner._sync()
            denoised = time.perf_counter()
            with runner._path(compiled):
                refined = runner._decode_pixels(packed, tile.width, tile.height, lighter)[0]
            paths.add(compiled)
            blend.add(tile, refined)
            runner._sync()
            denoise_s += denoised - tile_started
            decode_s += time.perf_counter() - denoised
        image = pil_images(blend.result()[None])[0]
        timings = StageTimings(text_encode=text_done - started, denoise=denoise_s, decode=decode_s)
        notes = [f"refined in {len(tiles)} tiles"] if len(tiles) > 1 else []
        path = "compiled" if paths == {True} else "eager"
        return GenerationResult(
            request, [image], [request.seed], runner.device, timings=timings, notes=notes, path=path
        )


def _tile_ramp(tiles: Sequence[Box]) -> int:
    """The narrowest overlap between neighbouring tiles (the blend ramp must fit inside it)."""
    overlaps = []
    for a in tiles:
        for b in tiles:
            if a is b:
                continue
            if a.y == b.y and a.x < b.x < a.right:
                overlaps.append(a.right - b.x)
            if a.x == b.x and a.y < b.y < a.bottom:
                overlaps.append(a.bottom - b.y)
    return max(1, min(overlaps)) if overlaps else 1
