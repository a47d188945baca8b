"""Speed profiles: how a loaded pipeline's transformer and VAE run (FLUXBOT_SPEED_PROFILE).

- eager: bf16 with fused QKV projections, a channels_last VAE and the fastest SDPA backend the
  card offers; no compilation.
- compile: eager, plus `torch.compile(fullgraph=True)` of each transformer block (regional
  compilation: 2 block types compile once and serve all 57 blocks) and of the VAE decoder, with
  dynamic shapes so every aspect preset and batch size reuses the same graphs, and CUDA graphs
  of the text encoders (fluxbot.engine.text_graphs); the bf16 blocks' GELUs run in their GEMMs'
  epilogues and the single blocks' proj_out skips its concat (fluxbot.engine.bf16_epilogues);
  each attention's q/k norm, concat and RoPE are one kernel (fluxbot.engine.qk_rope).
  Graphs build in the background while jobs
  run eagerly (fluxbot.engine.compiled), so no job waits on a compile. Inductor's caches live under
  `settings.cache_dir`, so a restart reloads compiled kernels instead of rebuilding.
- auto (the default): the fastest of these the device supports whose quality check passes: fast
  on cards with fp8 tensor cores (if the fp8 linears of the loaded model match bf16 closely
  enough), compile on other CUDA cards with Triton, eager elsewhere; the choice is logged with
  its reason.
- fast: compile, plus fp8 (e4m3) linears with row-wise dynamic activation scales and fast
  accumulation in the transformer blocks (fluxbot.engine.fp8): q/k/v, attention outputs and both MLP
  projections; on an H200 these matmuls run at 1200-1400 TFLOP/s against bf16's ~720. The
  activations' quantise is fused into the op that makes them: GELU + concat (fp8_fused,
  fp8_ff) and LayerNorm + modulation (norm_quantize, double_block_norm). Needs fp8 tensor
  cores (compute capability 8.9+).

`plan_speed` decides, from the device's features, what actually runs and logs why a profile
falls back; `apply_speed_profile` does it. Both are plain functions over a pipeline: no global
state beyond what torch itself keeps per process (its compile cache location).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from fluxbot.config import MemoryProfile, SpeedProfile
from fluxbot.core.requests import SCHNELL_SEQUENCE_LENGTH
from fluxbot.engine.bf16_epilogues import use_gemm_epilogues_
from fluxbot.engine.compiled import CompiledPaths, ShapeKey, compile_targets
from fluxbot.engine.double_block_norm import use_double_norm_quantize_
from fluxbot.engine.fp8 import (
    FP8_MIN_CAPABILITY,
    Fp8Check,
    QuantizeReport,
    check_fp8_linears,
    flux_transformer_chooser,
    quantize_linears_,
    scaled_mm_supported,
)
from fluxbot.engine.fp8_ff import fuse_feed_forwards_
from fluxbot.engine.fp8_fused import fuse_single_blocks_
from fluxbot.engine.norm_quantize import use_norm_quantize_
from fluxbot.engine.qk_rope import use_qk_norm_rope_
from fluxbot.engine.text_graphs import graph_text_encoders_

log = logging.getLogger(__name__)

ATTENTION_BACKENDS = {
    # our name -> diffusers' attention backend name (None: torch's own SDPA choice)
    "cudnn": "_native_cudnn",
    "flash": "_native_flash",
    "default": None,
}
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead")
PRODUCTION_BACKEND = "inductor"
RECOMPILE_LIMIT = 32
"""Every compiled module shares `Module._call_impl`'s code object, so its cache holds the graphs
of both block types and the VAE decoder, for one image and for several; torch's default of 8 is
close to that."""


@dataclass(frozen=True, slots=True)
class DeviceFeatures:
    """What a device can do that a speed profile relies on."""

    device_type: str
    capability: tuple[int, int] | None = None
    triton: bool = False
    cudnn_attention: bool = False
    fp8_matmul: bool = False

    @classmethod
    def probe(cls, device: str) -> DeviceFeatures:
        dev = torch.device(device)
        if dev.type != "cuda" or not torch.cuda.is_available():
            return cls(device_type=dev.type)
        capability = torch.cuda.get_device_capability(dev)
        return cls(
            device_type="cuda",
            capability=capability,
            triton=_has_triton(),
            cudnn_attention=_cudnn_attention_available(capability),
            fp8_matmul=capability >= FP8_MIN_CAPABILITY and scaled_mm_supported(dev),
        )


def _describe(features: DeviceFeatures) -> str:
    if features.capability is None:
        return f"device type {features.device_type}"
    major, minor = features.capability
    return f"{features.device_type} compute capability {major}.{minor}"


def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _cudnn_attention_available(capability: tuple[int, int]) -> bool:
    # cuDNN's fused attention runs on Ampere and later with cuDNN 9.
    version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return capability >= (8, 0) and version is not None and version >= 90000


@dataclass(frozen=True, slots=True)
class SpeedPlan:
    """What will run: the effective profile and each lever, with the reasons for any fallback."""

    requested: SpeedProfile
    profile: SpeedProfile
    compile: bool
    fp8: bool
    attention: str
    compile_mode: str = "default"
    dynamic: bool = True
    reasons: tuple[str, ...] = ()
    backend: str = PRODUCTION_BACKEND  # torch.compile backend; tests on the CPU use "eager"
    # CUDA graphs of whole denoising steps (fluxbot.engine.step_graphs), for `fast`: on an H200
    # (bench kernels, 1024² x1) fp8 0.422 vs 0.464 s, 0.441 vs 0.443, 0.458 vs 0.463 s/image
    # with and without, replays equal to the compiled call; bf16 `compile` 0.592 either way.
    step_graphs: bool = False
    # fp8: the single blocks' GELU + concat + quantise in one kernel (fluxbot.engine.fp8_fused).
    fused_quantize: bool = True
    # fp8: the double blocks' feed-forwards' GELU + quantise in one kernel (engine.fp8_ff).
    fused_feed_forward: bool = True
    # compiled profiles: Inductor also tries each row reduction up to 16,384 wide as one pass
    # over the row held in registers, and keeps the faster (its multi-kernel benchmarking).
    # Off: `fast` 0.404 against 0.395 s/image without it on an H200 (bench kernels, -21).
    persistent_reductions: bool = False
    # fp8 with qk_rope: the blocks' LayerNorm + modulation + fp8 quantise before their q/k/v
    # projections in one kernel (engine.norm_quantize, engine.double_block_norm). On an H200
    # (bench kernels, -22): 0.409 against 0.420 s/image without it, stock 0.872.
    norm_quantize: bool = False
    # bf16 `compile`: GELU in the GEMMs' epilogue and no concat before the single blocks'
    # proj_out (fluxbot.engine.bf16_epilogues).
    gemm_epilogues: bool = False
    # compiled profiles: q/k RMSNorm, text/image concat and RoPE in one kernel per attention
    # input (fluxbot.engine.qk_rope).
    qk_rope: bool = False


def plan_speed(
    requested: SpeedProfile,
    features: DeviceFeatures,
    *,
    memory: MemoryProfile = MemoryProfile.FULL,
    attention: str = "auto",
    compile_mode: str = "default",
    dynamic: bool = True,
    backend: str = PRODUCTION_BACKEND,
) -> SpeedPlan:
    """The speed plan for a device; a profile it cannot run falls back with a logged reason."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}")
    reasons: list[str] = []
    profile = requested
    if profile is SpeedProfile.AUTO:
        profile, why = _choose_auto(features, memory, backend)
        log.info("speed: auto chose '%s': %s", profile, why)
    if profile is SpeedProfile.FAST and not features.fp8_matmul:
        reasons.append(
            "speed profile 'fast' needs fp8 matmuls (NVIDIA compute capability 8.9+ with "
            f"torch._scaled_mm), which {_describe(features)} lacks; "
            "so it runs 'compile' (bf16)"
        )
        profile = SpeedProfile.COMPILE
    if profile is not SpeedProfile.EAGER and memory in (
        MemoryProfile.OFFLOAD,
        MemoryProfile.LOWVRAM,
    ):
        reasons.append(
            f"memory profile '{memory}' moves weights during the forward pass, which "
            "torch.compile cannot trace; running eager"
        )
        profile = SpeedProfile.EAGER
    if (
        profile is not SpeedProfile.EAGER
        and backend == PRODUCTION_BACKEND
        and (features.device_type != "cuda" or not features.triton)
    ):
        reasons.append(
            f"torch.compile here needs Triton on a CUDA device ({features.device_type}, "
            f"triton={'yes' if features.triton else 'no'}); running eager"
        )
        profile = SpeedProfile.EAGER
    if attention == "auto":
        # torch's own SDPA choice already runs cuDNN's kernel on Hopper (bench: 528 vs 520
        # TFLOP/s at 1024x1024), and diffusers' explicit cuDNN path adds q/k/v copies.
        attention = "default"
    elif attention not in ATTENTION_BACKENDS:
        raise ValueError(f"attention must be auto or one of {', '.join(ATTENTION_BACKENDS)}")
    elif attention == "cudnn" and not features.cudnn_attention:
        reasons.append("cuDNN attention needs CUDA compute capability 8.0+ and cuDNN 9")
        attention = "default"
    elif attention == "flash" and features.device_type != "cuda":
        reasons.append("flash attention needs a CUDA device")
        attention = "default"
    for reason in reasons:
        log.warning("speed: %s", reason)
    return SpeedPlan(
        requested=requested,
        profile=profile,
        compile=profile is not SpeedProfile.EAGER,
        fp8=profile is SpeedProfile.FAST,
        attention=attention,
        compile_mode=compile_mode,
        dynamic=dynamic,
        reasons=tuple(reasons),
        backend=backend,
        step_graphs=profile is SpeedProfile.FAST,
        gemm_epilogues=profile is SpeedProfile.COMPILE,
        qk_rope=profile is not SpeedProfile.EAGER,
        norm_quantize=profile is SpeedProfile.FAST,
    )


def _choose_auto(
    features: DeviceFeatures, memory: MemoryProfile, backend: str
) -> tuple[SpeedProfile, str]:
    """`auto`: the fastest profile this device runs (fp8 quality is checked once loaded)."""
    where = _describe(features)
    if memory in (MemoryProfile.OFFLOAD, MemoryProfile.LOWVRAM):
        return SpeedProfile.EAGER, f"memory profile '{memory}' moves weights during the forward"
    compilable = backend != PRODUCTION_BACKEND or (
        features.device_type == "cuda" and features.triton
    )
    if not compilable:
        return SpeedProfile.EAGER, f"{where} cannot run torch.compile's Triton kernels"
    if features.fp8_matmul:
        return SpeedProfile.FAST, f"{where} has fp8 tensor cores (checked against bf16 at load)"
    return SpeedProfile.COMPILE, f"{where} compiles (Triton) but has no fp8 tensor cores"


@dataclass(slots=True)
class SpeedReport:
    """What `apply_speed_profile` did, and how long it took (compilation itself happens lazily,
    at the first call of each shape: see `warm_up`)."""

    plan: SpeedPlan
    fused_qkv: bool = False
    channels_last: bool = False
    attention: str = "default"
    fp8: QuantizeReport | None = None
    fp8_check: Fp8Check | None = None
    fused_blocks: int = 0  # single blocks running fluxbot::gelu_cat_quantize
    fused_feed_forwards: int = 0  # double blocks' feed-forwards running it too
    norm_quantize_blocks: int = 0  # blocks running fluxbot::norm_modulate_quantize
    epilogue_modules: int = 0  # blocks and GELUs with fluxbot.engine.bf16_epilogues' forwards
    qk_rope_attentions: int = 0  # attentions with fluxbot.engine.qk_rope's processor
    compiled: list[str] = field(default_factory=list)
    paths: CompiledPaths | None = None  # the switchable compiled forms, when compiling
    graphed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def configure_compile_caches(cache_dir: Path) -> Path:
    """Point Inductor's (and Triton's) on-disk caches into the data dir, so a restart reuses
    compiled kernels and graphs. Explicit environment settings win."""
    root = Path(cache_dir).expanduser().resolve() / "torch-compile"
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    try:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        functorch_config.enable_autograd_cache = True
    except (ImportError, AttributeError):  # older torch: the defaults apply
        pass
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


_UNFUSED = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


def fuse_qkv_(model: torch.nn.Module) -> bool:
    """Fuse each attention's q/k/v projections into one matmul and drop the unfused copies
    (diffusers keeps them, which costs FLUX ~4 GB). Idempotent; False if the model can't."""
    fuse = getattr(model, "fuse_qkv_projections", None)
    if fuse is None:
        return False
    if any(getattr(m, "fused_projections", False) for m in model.modules()):
        return True
    try:
        fuse()
    except (ValueError, AttributeError, RuntimeError) as exc:
        log.info("speed: %s keeps separate q/k/v projections (%s)", type(model).__name__, exc)
        return False
    fused = False
    for module in model.modules():
        if not getattr(module, "fused_projections", False):
            continue
        fused = True
        if not hasattr(module, "to_qkv") and not hasattr(module, "to_kv"):
            continue
        for name in _UNFUSED:
            if name.startswith("add_") and not hasattr(module, "to_added_qkv"):
                continue
            if name == "to_q" and not hasattr(module, "to_qkv"):
                continue  # cross-attention fuses k/v only and still uses to_q
            if isinstance(getattr(module, name, None), torch.nn.Module):
                delattr(module, name)
    return fused


def set_attention_backend(transformer: Any, attention: str) -> str:
    """Select the SDPA backend for the transformer's attention; returns the one in use."""
    backend = ATTENTION_BACKENDS.get(attention)
    if backend is None or not hasattr(transformer, "set_attention_backend"):
        return "default"
    try:
        transformer.set_attention_backend(backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        log.warning("speed: attention backend %s unavailable (%s); using default", attention, exc)
        return "default"
    return attention


def compile_options(plan: SpeedPlan) -> dict[str, Any]:
    """torch.compile's arguments for the plan's compiled regions."""
    options: dict[str, Any] = {"fullgraph": True, "dynamic": plan.dynamic, "backend": plan.backend}
    if plan.compile_mode != "default":
        options["mode"] = plan.compile_mode  # torch.compile takes a mode or options, not both
    elif plan.persistent_reductions and plan.backend == "inductor":
        options["options"] = {"triton.multi_kernel": 1}
    return options


def apply_speed_profile(
    pipe: Any, plan: SpeedPlan, *, cache_dir: Path | None = None
) -> SpeedReport:
    """Apply a speed plan to a loaded (and placed) FluxPipeline, in place."""
    started = time.perf_counter()
    report = SpeedReport(plan=plan)
    transformer, vae = pipe.transformer, pipe.vae
    report.fused_qkv = fuse_qkv_(transformer)
    fuse_qkv_(vae)
    if plan.attention != "default":
        report.attention = set_attention_backend(transformer, plan.attention)
    if plan.compile and _on_accelerator(vae):
        # Only under compile: in eager mode channels_last made the H200's VAE decode slower
        # (0.143 vs 0.109 s) and its peak memory higher.
        vae.to(memory_format=torch.channels_last)
        report.channels_last = True
    if plan.fp8:
        device = next(transformer.parameters()).device
        chooser = flux_transformer_chooser(dynamic=True, modulation=False)
        report.fp8_check = check_fp8_linears(transformer, chooser, device)
        log.info("speed: fp8 check: %s", report.fp8_check.describe())
        if report.fp8_check.passed or plan.requested is SpeedProfile.FAST:
            if not report.fp8_check.passed:
                log.warning("speed: fp8 check failed, but 'fast' was asked for explicitly")
            report.fp8 = quantize_linears_(transformer, chooser, device)
            log.info(
                "speed: %d transformer linears now fp8 (%.1f GiB saved)",
                report.fp8.converted,
                report.fp8.saved_gib,
            )
            if plan.fused_quantize:
                report.fused_blocks = fuse_single_blocks_(transformer)
            if plan.fused_feed_forward:
                report.fused_feed_forwards = fuse_feed_forwards_(transformer)
        else:
            log.warning("speed: auto falls back to 'compile': the fp8 check failed")
            report.plan = replace(
                plan,
                profile=SpeedProfile.COMPILE,
                fp8=False,
                step_graphs=False,
                gemm_epilogues=True,
            )
    if report.plan.gemm_epilogues:
        report.epilogue_modules = use_gemm_epilogues_(transformer)
    if report.plan.qk_rope:
        report.qk_rope_attentions = use_qk_norm_rope_(transformer)
        if report.plan.norm_quantize and report.fused_blocks:
            report.norm_quantize_blocks = use_norm_quantize_(
                transformer
            ) + use_double_norm_quantize_(transformer)
    if plan.compile:
        if cache_dir is not None:
            configure_compile_caches(cache_dir)
        import torch._dynamo.config as dynamo_config

        dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, RECOMPILE_LIMIT)
        options = compile_options(plan)
        # Built lazily, shape by shape, on the thread that asks (FluxRunner's background
        # compile); every other thread keeps the eager forms meanwhile.
        graphs = report.plan.step_graphs and _device_of(transformer).type == "cuda"
        report.paths = CompiledPaths(
            compile_targets(pipe),
            options,
            name=str(_device_of(vae)),
            graph_model=transformer if graphs else None,
            device=_device_of(transformer),
        )
        report.compiled += ["transformer blocks", "vae decoder", "vae encoder"]
        if _on_accelerator(transformer):
            # The text encoders always see one prompt of a fixed length: CUDA graphs, captured
            # at the first prompt (fluxbot.engine.text_graphs).
            report.graphed = graph_text_encoders_(pipe)
    report.seconds = time.perf_counter() - started
    return report


def _device_of(module: torch.nn.Module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _on_accelerator(module: torch.nn.Module) -> bool:
    try:
        return next(module.parameters()).device.type != "cpu"
    except StopIteration:
        return False


def warm_up(
    runner: Any, sizes: Sequence[tuple[int, int]], *, counts: Sequence[int] = (1, 2)
) -> float:
    """Compile every size with each image count now, on the calling thread, before the first
    job (benchmarks; the bot compiles in the background instead: FluxRunner.load)."""
    started = time.perf_counter()
    shapes = warm_shapes(sizes, counts=counts)
    paths = getattr(runner, "compiled", None)
    if paths is not None:
        paths.build_now(shapes)
    log.info("warm-up of %d shape(s): %.1f s", len(shapes), time.perf_counter() - started)
    return time.perf_counter() - started


def warm_shapes(
    sizes: Sequence[tuple[int, int]],
    counts: Sequence[int] = (1, 2, 3, 4),
    tokens: int = SCHNELL_SEQUENCE_LENGTH,
) -> list[ShapeKey]:
    """The shapes to compile, most wanted first: every size alone, then with more images."""
    return [ShapeKey(count, w, h, tokens) for count in counts for w, h in sizes]
