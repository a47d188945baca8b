"""FluxRunner: loads FLUX.1-schnell and turns validated requests into images.

A runner is not re-entrant: exactly one thread (its worker's executor) ever calls `generate`.
The diffusers pipeline does the denoising; the runner prepares per-image noise from one CPU
generator per seed (so any image of a batch can be made again alone), caches text embeddings
(rerolls skip the text encoders), and decodes the latents itself so each stage is timed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from fluxbot.config import TINY_RANDOM, MemoryProfile, SpeedProfile
from fluxbot.core.requests import GenerationRequest, GenerationResult, StageTimings
from fluxbot.core.seeds import make_generators
from fluxbot.core.styles import LoraSpec
from fluxbot.devices.capture_gate import gate_for
from fluxbot.devices.memory import LighterSettings
from fluxbot.engine.compiled import CompiledPaths, ShapeKey, private_pipeline
from fluxbot.engine.image_ops import ImageOps, pixels
from fluxbot.engine.lora import DEFAULT_CAPACITY, LoraAdapters
from fluxbot.engine.memory_profiles import pin_execution_device
from fluxbot.engine.pixels import pil_images, uint8_pixels

log = logging.getLogger(__name__)

DEFAULT_EMBED_CACHE = 64
PREVIEW_MAX_SIDE = 128
# diffusers/accelerate build models under a process-wide monkeypatch (init_empty_weights): any
# module another thread creates meanwhile (a second replica's load, or its q/k/v fusion) gets
# meta parameters. Replicas are therefore built one at a time.
_BUILD_LOCK = threading.Lock()


class ModelLoadError(Exception):
    """The model could not be loaded; the message says what to download and where to put it."""


class GenerationCancelled(Exception):
    """The job's cancel event was set; the pipeline stopped at the next step."""


@dataclass(frozen=True, slots=True)
class StepProgress:
    step: int
    total: int
    preview: Image.Image | None = None


@dataclass(frozen=True, slots=True)
class PromptEmbeds:
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor


StepCallback = Callable[[StepProgress], None]


def default_dtype(device: str) -> torch.dtype:
    """bf16 on accelerators (FLUX's native precision); fp32 on CPU, where bf16 is slow."""
    return torch.float32 if device.startswith("cpu") else torch.bfloat16


def load_flux_pipeline(model: str, dtype: torch.dtype) -> Any:
    """Load a FluxPipeline from a hub id, a local diffusers directory, or `tiny-random`."""
    if model == TINY_RANDOM:
        from fluxbot.engine.model_builder import build_tiny_pipeline

        return build_tiny_pipeline(dtype)
    from diffusers import FluxPipeline

    local = Path(model).expanduser()
    source = str(local) if local.exists() else model
    if local.exists() and not (local / "model_index.json").is_file():
        raise ModelLoadError(
            f"{local} is not a diffusers model directory (no model_index.json). Download one "
            "with `hf download black-forest-labs/FLUX.1-schnell --local-dir DIR` and set "
            "FLUXBOT_MODEL=DIR."
        )
    try:
        pipe = FluxPipeline.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded: "
            if offline
            else "The download failed or the repository is gated: "
        )
        raise ModelLoadError(
            f"cannot load {model!r}. {hint}download the weights once with "
            f"`hf download {model} --local-dir /path/to/FLUX.1-schnell` (accept the licence on "
            "the model page and `hf auth login` first if asked), then set "
            f"FLUXBOT_MODEL=/path/to/FLUX.1-schnell. ({type(exc).__name__}: {exc})"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps the noise's norm, unlike a straight lerp."""
    a32, b32 = a.float().flatten(), b.float().flatten()
    cos = torch.dot(a32, b32) / (a32.norm() * b32.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        mixed = (1 - t) * a32 + t * b32
    else:
        sin = torch.sin(omega)
        mixed = (torch.sin((1 - t) * omega) / sin) * a32 + (torch.sin(t * omega) / sin) * b32
    return mixed.reshape(a.shape).to(a.dtype)


class FluxRunner:
    """One pipeline replica on one device; `generate` is called from one thread only."""

    def __init__(
        self,
        pipe: Any,
        device: str,
        *,
        model_name: str,
        dtype: torch.dtype | None = None,
        embed_cache_size: int = DEFAULT_EMBED_CACHE,
        placed: bool = False,
        lora_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.pipe = pipe
        self.device = device
        self.model_name = model_name
        self.dtype = dtype or default_dtype(device)
        self._embed_cache: OrderedDict[tuple[str, int], PromptEmbeds] = OrderedDict()
        self._embed_cache_size = embed_cache_size
        self.embed_cache_hits = 0
        self.text_device: torch.device | None = None  # set when the encoders sit on another card
        self.profiles: tuple[MemoryProfile, SpeedProfile] = (
            MemoryProfile.FULL,
            SpeedProfile.EAGER,
        )
        self.loras = LoraAdapters(pipe, capacity=lora_capacity)
        self.compiled: CompiledPaths | None = None
        self._warm_pipe: Any = None
        if not placed:
            pipe.to(device)
        # diffusers' `_execution_device` walks every module of every component for offload
        # hooks (~5 ms for FLUX) at each access, several times per job; the runner's device is
        # the answer for every placement fluxbot makes (resident, split, offloaded).
        pin_execution_device(pipe, torch.device(device))
        # img2img and inpainting pipelines over the same modules (fluxbot.engine.image_ops).
        self.image_ops = ImageOps(self)

    @classmethod
    def load(
        cls,
        model: str,
        device: str,
        dtype: torch.dtype | None = None,
        *,
        memory: MemoryProfile = MemoryProfile.FULL,
        speed: SpeedProfile = SpeedProfile.EAGER,
        cache_dir: Path | None = None,
        warm_sizes: Sequence[tuple[int, int]] = (),
        edit_sizes: Sequence[tuple[int, int]] = (),
        component_devices: Mapping[str, str] | None = None,
        loras: Sequence[LoraSpec] = (),
        lora_capacity: int = DEFAULT_CAPACITY,
        lora_slot: bool | None = None,
        background_compile: bool = True,
        compile_backend: str | None = None,
    ) -> FluxRunner:
        """Load, place by memory profile, apply the speed profile, compile the warm shapes.

        A profile the device cannot run falls back with a logged reason (see
        fluxbot.engine.memory_profiles and fluxbot.engine.speed); `profiles` says what runs.
        `component_devices` spreads the components over cards (the transformer's is `device`).
        `loras` are the styles' LoRAs: when the transformer is compiled, fp8 or offloaded
        (`lora_slot` None), or `lora_slot` is True, one adapter slot sized for all of them is
        built before those steps (fluxbot.engine.lora); otherwise each loads as a named
        adapter when a job first needs it.
        With `background_compile` the runner is returned at once and serves eagerly while the
        `warm_sizes` (each with 1-4 images), then the `edit_sizes` (one image: upscale tiles,
        pan canvases) compile on a background thread; otherwise they are compiled before it
        returns.
        """
        from fluxbot.engine.memory_profiles import apply_memory_profile, plan_memory
        from fluxbot.engine.speed import (
            PRODUCTION_BACKEND,
            DeviceFeatures,
            apply_speed_profile,
            fuse_qkv_,
            plan_speed,
            warm_shapes,
        )

        if component_devices and component_devices.get("vae", device) != device:
            # The runner decodes the transformer's latents where they are.
            raise ValueError("the VAE must sit on the transformer's device")
        dtype = dtype or default_dtype(device)
        # A person waiting at the terminal sees this before the (possibly long) load.
        log.info("loading %s on %s (memory %s, speed %s)...", model, device, memory, speed)
        started = time.perf_counter()
        with _BUILD_LOCK:
            pipe = load_flux_pipeline(model, dtype)
            features = DeviceFeatures.probe(device)
            memory_plan = plan_memory(memory, device, fp8_matmul=features.fp8_matmul)
            speed_plan = plan_speed(
                speed,
                features,
                memory=memory_plan.profile,
                backend=compile_backend or PRODUCTION_BACKEND,
            )
            adapters = LoraAdapters(pipe, capacity=lora_capacity)
            if lora_slot is None:
                lora_slot = speed_plan.compile or memory_plan.profile is not MemoryProfile.FULL
            if loras and lora_slot:
                # Fuse q/k/v first (the slot's layers are the fused ones), then the slot, so
                # fp8 conversion and torch.compile see the LoRA layers they must keep.
                fuse_qkv_(pipe.transformer)
                adapters.install_slot(loras)
            apply_memory_profile(pipe, memory_plan, device, component_devices)
            runner = cls(pipe, device, model_name=model, dtype=dtype, placed=True)
            runner.loras = adapters
            if component_devices and "text_encoder_2" in component_devices:
                runner.text_device = torch.device(component_devices["text_encoder_2"])
            report = apply_speed_profile(pipe, speed_plan, cache_dir=cache_dir)
        runner.profiles = (memory_plan.profile, report.plan.profile)
        loaded = time.perf_counter()
        log.info(
            "loaded %s on %s in %.1f s (memory %s, speed %s)",
            model,
            device,
            loaded - started,
            memory_plan.profile,
            report.plan.profile,
        )
        if report.paths is not None:
            runner.attach_compiled(report.paths)
            shapes = warm_shapes(warm_sizes)
            shapes += [s for s in warm_shapes(edit_sizes, counts=(1,)) if s not in shapes]
            if background_compile:
                log.info("compiling %d shape(s) in the background; serving eagerly", len(shapes))
                report.paths.request(shapes)
            else:
                log.info(
                    "compiled %d shape(s) in %.1f s", len(shapes), report.paths.build_now(shapes)
                )
        return runner

    def attach_compiled(self, paths: CompiledPaths) -> None:
        """Serve ready shapes through `paths`; shapes not ready are queued there as they come."""
        self.compiled = paths
        paths.bind(self._warm_shape)

    def close(self) -> None:
        """Stop compiling in the background (the runner itself stays usable, eagerly)."""
        if self.compiled is not None:
            self.compiled.close()

    def _warm_shape(self, key: ShapeKey) -> torch.Tensor:
        """One step, a decode and an encode (image jobs encode their source) at `key`'s shape,
        through a private copy of the pipeline (the compile thread never touches the pipeline
        or scheduler the jobs use); its latents."""
        if self._warm_pipe is None:
            self._warm_pipe = private_pipeline(self.pipe)
        pipe = self._warm_pipe
        config = pipe.transformer.config
        main = self._execution_device
        embeds = torch.zeros(
            key.images, key.tokens, config.joint_attention_dim, device=main, dtype=self.dtype
        )
        pooled = torch.zeros(
            key.images, config.pooled_projection_dim, device=main, dtype=self.dtype
        )
        latents = self.initial_noise(list(range(key.images)), key.width, key.height)
        with torch.inference_mode():
            packed = pipe(
                prompt_embeds=embeds,
                pooled_prompt_embeds=pooled,
                latents=latents,
                width=key.width,
                height=key.height,
                num_inference_steps=1,
                guidance_scale=0.0,
                max_sequence_length=key.tokens,
                output_type="latent",
            ).images
        self._decode(packed, key.width, key.height, None)
        vae = pipe.vae
        # The source as an image job's goes in: diffusers' preprocessing (its layout) of the
        # pictures' pixels, an inference tensor.
        blank = [Image.new("RGB", (key.width, key.height))] * key.images
        with torch.inference_mode():
            source = pipe.image_processor.preprocess(
                pixels(blank, main), height=key.height, width=key.width
            )
            source = source.to(next(vae.parameters()).device, vae.dtype)
            vae.encode(source)
        self._sync()
        return packed

    @classmethod
    def tiny(cls, device: str = "cpu") -> FluxRunner:
        return cls.load(TINY_RANDOM, device)

    # -- text ---------------------------------------------------------------------------------

    def encode(self, prompt: str, max_sequence_length: int) -> PromptEmbeds:
        """Prompt embeddings, from the cache when this prompt was seen recently."""
        key = (prompt, max_sequence_length)
        cached = self._embed_cache.get(key)
        if cached is not None:
            self._embed_cache.move_to_end(key)
            self.embed_cache_hits += 1
            return cached
        main = self._execution_device
        with torch.inference_mode():
            prompt_embeds, pooled, _ = self.pipe.encode_prompt(
                prompt=prompt,
                prompt_2=None,
                device=self.text_device or main,
                num_images_per_prompt=1,
                max_sequence_length=max_sequence_length,
            )
        embeds = PromptEmbeds(prompt_embeds.to(main), pooled.to(main))
        self._embed_cache[key] = embeds
        if len(self._embed_cache) > self._embed_cache_size:
            self._embed_cache.popitem(last=False)
        return embeds

    def count_tokens(self, text: str) -> tuple[int, int]:
        """(CLIP, T5) token counts of a prompt, special tokens included."""
        clip = len(self.pipe.tokenizer(text, truncation=False).input_ids)
        t5 = len(self.pipe.tokenizer_2(text, truncation=False).input_ids)
        return clip, t5

    @property
    def _execution_device(self) -> torch.device:
        return self.pipe._execution_device

    # -- noise ----------------------------------------------------------------------------------

    def initial_noise(self, seeds: Sequence[int], width: int, height: int) -> torch.Tensor:
        """Packed initial latents, one CPU generator per seed: image i depends on seed i only."""
        channels = self.pipe.transformer.config.in_channels // 4
        generators = make_generators(seeds)
        latents = [
            self.pipe.prepare_latents(
                1, channels, height, width, self.dtype, self._execution_device, generator
            )[0]
            for generator in generators
        ]
        return torch.cat(latents)

    def _request_noise(self, request: GenerationRequest) -> torch.Tensor:
        anim = request.animation
        if anim is None:
            return self.initial_noise(request.seeds, request.width, request.height)
        start = self.initial_noise([request.seed], request.width, request.height)
        end = self.initial_noise([anim.seed_to], request.width, request.height)
        steps = [i / (anim.frames - 1) for i in range(anim.frames)]
        return torch.cat([_slerp(start, end, t) for t in steps])

    def _request_embeds(self, request: GenerationRequest) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings for each image of one request (repeated, or interpolated for a morph)."""
        first = self.encode(request.prompt, request.max_sequence_length)
        anim = request.animation
        n = request.image_count
        if anim is None or not anim.prompt_to:
            return first.prompt_embeds.repeat(n, 1, 1), first.pooled.repeat(n, 1)
        last = self.encode(anim.prompt_to, request.max_sequence_length)
        weights = [i / (n - 1) for i in range(n)]
        embeds = torch.cat(
            [torch.lerp(first.prompt_embeds, last.prompt_embeds, w) for w in weights]
        )
        pooled = torch.cat([torch.lerp(first.pooled, last.pooled, w) for w in weights])
        return embeds, pooled

    # -- generation -----------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
        lighter: LighterSettings | None = None,
        want_preview: bool = False,
    ) -> list[GenerationResult]:
        """Run compatible requests (equal `batch_key()`) as one batch; one result per request.

        Raises GenerationCancelled when `cancel` is set, and lets out-of-memory errors through
        for the worker's recovery policy. `lighter` (vae_tiling/vae_slicing/split_batch) is the
        retry setting after an OOM.
        """
        if not requests:
            return []
        keys = {r.batch_key() for r in requests}
        if len(keys) != 1:
            raise ValueError("generate() takes requests with the same batch_key() only")
        # No CUDA graph capture on this card while the job works (fluxbot.devices.capture_gate).
        with gate_for(self.device).working():
            if lighter is not None and lighter.split_batch:
                total = sum(r.image_count for r in requests)
                if total > 1:
                    return self._generate_split(requests, on_step, cancel, lighter, want_preview)
            return self._generate_batch(requests, on_step, cancel, lighter, want_preview)

    def _generate_split(
        self,
        requests: Sequence[GenerationRequest],
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        lighter: LighterSettings,
        want_preview: bool,
    ) -> list[GenerationResult]:
        """The OOM retry: every image alone, then reassembled per request."""
        results = []
        for request in requests:
            if request.animation is not None:
                parts = [request]  # a morph's frames share one noise path: keep it whole
            else:
                parts = [replace(request, seed=seed, count=1) for seed in request.seeds]
            pieces = [
                self._generate_batch([part], on_step, cancel, lighter, want_preview)[0]
                for part in parts
            ]
            timings = StageTimings(
                text_encode=sum(p.timings.text_encode for p in pieces),
                denoise=sum(p.timings.denoise for p in pieces),
                decode=sum(p.timings.decode for p in pieces),
            )
            merged = GenerationResult(
                request,
                [image for p in pieces for image in p.images],
                [seed for p in pieces for seed in p.seeds],
                self.device,
                timings=timings,
                notes=["retried one image at a time after running out of memory"],
            )
            results.append(merged)
        return results

    def _generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        on_step: StepCallback | None,
        cancel: threading.Event | None,
        lighter: LighterSettings | None,
        want_preview: bool,
    ) -> list[GenerationResult]:
        first = requests[0]
        if first.edit is not None and first.edit.source_sha256 is not None:
            self.loras.activate(first.lora)  # the image pipelines share the transformer
            return self.image_ops.generate(requests, on_step, cancel, lighter, want_preview)
        self._check_cancel(cancel)
        started = time.perf_counter()
        embeds, pooled, neg_embeds, neg_pooled = [], [], [], []
        for request in requests:
            e, p = self._request_embeds(request)
            embeds.append(e)
            pooled.append(p)
            if request.uses_true_cfg:
                neg = self.encode(request.negative, request.max_sequence_length)
                neg_embeds.append(neg.prompt_embeds.repeat(request.image_count, 1, 1))
                neg_pooled.append(neg.pooled.repeat(request.image_count, 1))
        latents = torch.cat([self._request_noise(r) for r in requests])
        self.loras.activate(first.lora)  # equal batch keys: one LoRA for the whole batch
        self._sync()
        text_done = time.perf_counter()

        extra: dict[str, Any] = {}
        if neg_embeds:
            extra = {
                "negative_prompt_embeds": torch.cat(neg_embeds),
                "negative_pooled_prompt_embeds": torch.cat(neg_pooled),
                "true_cfg_scale": first.true_cfg_scale,
            }
        key = ShapeKey(len(latents), first.width, first.height, first.max_sequence_length)
        compiled = self._use_compiled(key)
        with self._path(compiled), torch.inference_mode():
            packed = self.pipe(
                prompt_embeds=torch.cat(embeds),
                pooled_prompt_embeds=torch.cat(pooled),
                latents=latents,
                width=first.width,
                height=first.height,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance_scale,
                max_sequence_length=first.max_sequence_length,
                output_type="latent",
                callback_on_step_end=self._step_callback(first, on_step, cancel, want_preview),
                **extra,
            ).images
        self._check_cancel(cancel)
        self._sync()
        denoise_done = time.perf_counter()

        with self._path(compiled):
            images = self._decode(packed, first.width, first.height, lighter)
        self._sync()
        decode_done = time.perf_counter()

        results: list[GenerationResult] = []
        offset = 0
        n_images = len(images)
        for request in requests:
            share = request.image_count / n_images
            timings = StageTimings(
                text_encode=(text_done - started) * share,
                denoise=(denoise_done - text_done) * share,
                decode=(decode_done - denoise_done) * share,
            )
            own = images[offset : offset + request.image_count]
            offset += request.image_count
            seeds = request.seeds if request.animation is None else [request.seed]
            results.append(
                GenerationResult(
                    request,
                    own,
                    list(seeds),
                    self.device,
                    timings=timings,
                    path="compiled" if compiled else "eager",
                )
            )
        return results

    def _use_compiled(self, key: ShapeKey) -> bool:
        """Whether a call of this shape runs the compiled forms: once the shape is ready. Until
        then it runs eagerly and the shape goes first in the background compile's line. Text,
        img2img and inpainting calls of one shape run the same transformer and decoder shapes,
        so one compiled shape serves them all."""
        if self.compiled is None:
            return False
        if self.compiled.is_ready(key):
            return True
        self.compiled.request([key], first=True)
        return False

    def _path(self, compiled: bool) -> AbstractContextManager[None]:
        """The compiled forms on this thread inside the block, or the eager ones."""
        return self.compiled.active(compiled) if self.compiled is not None else nullcontext()

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
    ) -> Callable[..., dict[str, Any]]:
        """Progress, previews and cancel for one pipeline call; `offset`/`total` count steps
        over several calls (an upscale's tiles), `size` is the call's image size."""
        total = total if total is not None else request.denoise_steps
        width, height = size or (request.width, request.height)

        def callback(pipe: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            # The one place the pipeline's interrupt flag is touched.
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True
                return kwargs
            if on_step is not None:
                preview = None
                done = offset + index + 1
                if want_preview and done < total:
                    preview = self._preview(kwargs["latents"], width, height)
                on_step(StepProgress(done, total, preview))
            return kwargs

        return callback

    def _decode(
        self, packed: torch.Tensor, width: int, height: int, lighter: LighterSettings | None
    ) -> list[Image.Image]:
        return pil_images(self._decode_pixels(packed, width, height, lighter))

    def _decode_pixels(
        self, packed: torch.Tensor, width: int, height: int, lighter: LighterSettings | None
    ) -> torch.Tensor:
        """The VAE decode of packed latents, as N x H x W x 3 uint8 pixels on the device."""
        pipe = self.pipe
        vae = pipe.vae
        # Switch on only what is off, so a profile's own tiling (lowvram) survives the retry.
        tiling = lighter is not None and lighter.vae_tiling and not vae.use_tiling
        slicing = lighter is not None and lighter.vae_slicing and not vae.use_slicing
        if tiling:
            vae.enable_tiling()
        if slicing:
            vae.enable_slicing()
        try:
            with torch.inference_mode():
                latents = pipe._unpack_latents(packed, height, width, pipe.vae_scale_factor)
                latents = latents / vae.config.scaling_factor + vae.config.shift_factor
                decoded = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
                return uint8_pixels(decoded)
        finally:
            if tiling:
                vae.disable_tiling()
            if slicing:
                vae.disable_slicing()

    def _preview(self, packed: torch.Tensor, width: int, height: int) -> Image.Image:
        """A cheap, approximate colour preview of the first image, straight from the latents."""
        with torch.inference_mode():
            latents = self.pipe._unpack_latents(
                packed[:1], height, width, self.pipe.vae_scale_factor
            )[0].float()
            channels = latents.shape[0]
            rgb = torch.stack([latents[i::3].mean(0) for i in range(min(3, channels))])
            if rgb.shape[0] < 3:
                rgb = rgb.repeat(3, 1, 1)[:3]
            low = rgb.amin(dim=(1, 2), keepdim=True)
            high = rgb.amax(dim=(1, 2), keepdim=True)
            rgb = ((rgb - low) / (high - low + 1e-6) * 255).clamp(0, 255).byte()
            array = rgb.permute(1, 2, 0).cpu().numpy()
        image = Image.fromarray(array)
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        return image

    def _check_cancel(self, cancel: threading.Event | None) -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()

    def _sync(self) -> None:
        device = self._execution_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "xpu":
            torch.xpu.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()
