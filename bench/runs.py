"""The measured runs: stock diffusers, fluxbot's worker path per speed profile, memory profiles,
restarts, and micro-benchmarks of the levers. Each returns plain JSON-ready dicts."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.measure import (
    GapProbe,
    ProbedRunner,
    StageProbe,
    median,
    peak_gib,
    reset_peak,
    sync,
)

SCHNELL = {"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256}
REFERENCE_PROMPT = "a lighthouse on a cliff at dusk, oil painting"
REFERENCE_SEED = 1234

Log = Callable[[str], None]


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    height: int
    count: int


CASES = {
    "1024x1": Case("1024x1024 batch 1", 1024, 1024, 1),
    "1024x4": Case("1024x1024 count 4", 1024, 1024, 4),
    "512x4": Case("512x512 count 4", 512, 512, 4),
    "256x2": Case("256x256 count 2 (CPU smoke tests)", 256, 256, 2),
}


@dataclass
class Context:
    model_dir: Path
    work_dir: Path
    device: str
    repeats: int
    queue_jobs: int
    log: Log
    attention: str = "auto"
    compile_mode: str = "default"
    dynamic: bool = True
    first_size: int = 1024  # the first image (and the reference image) is first_size squared
    warm_presets: bool = True
    references: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        from fluxbot.engine.pipeline import default_dtype

        return default_dtype(self.device)


def _prompt(tag: str, i: int) -> str:
    # A distinct prompt per run: the embedding cache must not flatter the per-image numbers.
    return f"{tag} run {i}: a red fox in a snowy forest, morning light, detailed photo"


def queue_jobs(n: int) -> list[dict[str, Any]]:
    """A fixed mix: every aspect preset, counts 1/2/4, and every fourth job a reroll (same
    prompt as the job before, new seed: the embedding cache's case)."""
    from fluxbot.core.requests import ASPECT_PRESETS

    presets = list(ASPECT_PRESETS.values())
    jobs = []
    for i in range(n):
        width, height = presets[i % len(presets)]
        count = 4 if i % 7 == 3 else 2 if i % 5 == 2 else 1
        prompt_index = i - 1 if i % 4 == 3 else i
        jobs.append(
            {
                "prompt": f"queue job {prompt_index}: a city street in the rain, neon signs",
                "seed": 1000 + i,
                "width": width,
                "height": height,
                "count": count,
            }
        )
    return jobs


def free_memory(device: str) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _image_delta(a: Any, b: Any) -> dict[str, float]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    return {"mean_abs_diff": float(np.mean(np.abs(x - y))), "psnr_db": psnr}


def _summarise(
    case: Case, gens: list[float], stages: list[dict[str, float]], encode: list[float]
) -> dict[str, Any]:
    n = case.count
    keys = stages[0].keys() if stages else ()
    per_image = {k: median([s[k] for s in stages]) / n for k in keys}
    per_image["image_encode"] = median(encode) / n if encode else None
    return {
        "runs": len(gens),
        "run_s": gens,
        "s_per_image": median(gens) / n,
        "stages_s_per_image": per_image,
    }


# -- stock -------------------------------------------------------------------------------------


def run_stock(ctx: Context, cases: list[str], with_queue: bool) -> dict[str, Any]:
    """FluxPipeline in bf16, called as a plain script would; images saved on the same thread."""
    from diffusers import FluxPipeline

    device = ctx.device
    plain_script_switches()
    out_dir = ctx.work_dir / "images" / "stock"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(str(ctx.model_dir), torch_dtype=ctx.dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    sync(device)
    load_s = time.perf_counter() - started
    ctx.log(f"stock: loaded in {load_s:.1f} s")
    probe = StageProbe(pipe, device)

    def call(prompt: str, seed: int, width: int, height: int, count: int) -> list[Any]:
        return pipe(
            prompt=prompt,
            width=width,
            height=height,
            num_images_per_prompt=count,
            generator=torch.Generator("cpu").manual_seed(seed),
            **SCHNELL,
        ).images

    def save(images: list[Any], stem: str) -> float:
        t = time.perf_counter()
        for j, image in enumerate(images):
            image.save(out_dir / f"{stem}-{j}.png")
        return time.perf_counter() - t

    result: dict[str, Any] = {"load_s": load_s, "cases": {}}
    first = call(REFERENCE_PROMPT, REFERENCE_SEED, ctx.first_size, ctx.first_size, 1)
    sync(device)
    result["start_to_first_image_s"] = time.perf_counter() - started
    ctx.references["stock"] = first[0]
    for key in cases:
        case = CASES[key]
        reset_peak(device)
        call(_prompt("warm-up", 0), 0, case.width, case.height, case.count)
        gens, stages, encodes = [], [], []
        for i in range(ctx.repeats):
            probe.start()
            t = time.perf_counter()
            images = call(_prompt(key, i), i, case.width, case.height, case.count)
            sync(device)
            gens.append(time.perf_counter() - t)
            stages.append(probe.stop())
            encodes.append(save(images, f"{key}-{i}"))
        summary = _summarise(case, gens, stages, encodes)
        summary["images_per_s"] = case.count * len(gens) / (sum(gens) + sum(encodes))
        summary["peak_vram_gib"] = peak_gib(device)
        result["cases"][key] = summary
        ctx.log(f"stock {key}: {summary['s_per_image']:.3f} s/image")
    if with_queue:
        jobs = queue_jobs(ctx.queue_jobs)
        reset_peak(device)
        t0 = time.perf_counter()
        idle = []
        images_total = 0
        for i, job in enumerate(jobs):
            images = call(job["prompt"], job["seed"], job["width"], job["height"], job["count"])
            idle.append(save(images, f"queue-{i}"))  # the GPU waits while a plain script saves
            images_total += len(images)
        wall = time.perf_counter() - t0
        result["queue"] = {
            "jobs": len(jobs),
            "images": images_total,
            "wall_s": wall,
            "images_per_s": images_total / wall,
            "gpu_idle_between_jobs_ms": {
                "mean": 1000 * float(np.mean(idle)),
                "max": 1000 * float(np.max(idle)),
                "how": "PNG encoding and writing on the calling thread (GPU idle meanwhile)",
            },
            "image_encode_threads": [threading.current_thread().name],
            "peak_vram_gib": peak_gib(device),
        }
        ctx.log(f"stock queue: {images_total / wall:.2f} images/s")
    return result  # pipe is freed with this frame; the caller frees the device cache


# -- fluxbot -----------------------------------------------------------------------------------


@dataclass
class _Loaded:
    runner: Any
    probe: GapProbe
    timings: dict[str, float]
    speed: Any
    memory: Any


def apply_bot_switches(device: str) -> None:
    """The process-wide torch switches fluxbot.app.root sets for a device before loading."""
    from fluxbot.devices.discovery import discover_devices
    from fluxbot.devices.vendor import apply_vendor_settings

    wanted = torch.device(device)
    if wanted.type == "cuda" and wanted.index is None:
        wanted = torch.device("cuda", torch.cuda.current_device())
    for info in discover_devices():
        if torch.device(info.torch_device) == wanted:
            apply_vendor_settings(info)


def plain_script_switches() -> None:
    """torch's defaults, as a plain diffusers script runs (fluxbot's runs may have set others)."""
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False


def load_fluxbot(
    ctx: Context,
    speed_profile: Any,
    cache_dir: Path,
    *,
    memory_profile: Any = None,
    warm_sizes: list[tuple[int, int]] | None = None,
    levers: bool = True,
) -> _Loaded:
    """fluxbot's start sequence: load (real loading code), place, apply speed, warm up."""
    from fluxbot.config import MemoryProfile
    from fluxbot.core.requests import GenerationRequest
    from fluxbot.engine.memory_profiles import apply_memory_profile, plan_memory
    from fluxbot.engine.pipeline import FluxRunner, load_flux_pipeline
    from fluxbot.engine.speed import (
        DeviceFeatures,
        apply_speed_profile,
        plan_speed,
        warm_shapes,
        warm_up,
    )

    device = ctx.device
    timings: dict[str, float] = {}
    started = time.perf_counter()
    apply_bot_switches(device)
    pipe = load_flux_pipeline(str(ctx.model_dir), ctx.dtype)
    features = DeviceFeatures.probe(device)
    memory = memory_profile or MemoryProfile.FULL
    mem_plan = plan_memory(memory, device, fp8_matmul=features.fp8_matmul)
    mem_report = apply_memory_profile(pipe, mem_plan, device)
    runner = FluxRunner(pipe, device, model_name=str(ctx.model_dir), dtype=ctx.dtype, placed=True)
    sync(device)
    timings["load_s"] = time.perf_counter() - started
    plan = plan_speed(
        speed_profile,
        features,
        memory=mem_plan.profile,
        attention=ctx.attention,
        compile_mode=ctx.compile_mode,
        dynamic=ctx.dynamic,
    )
    report = None
    if levers:
        report = apply_speed_profile(pipe, plan, cache_dir=cache_dir)
        if report.paths is not None:
            runner.attach_compiled(report.paths)
    timings["apply_s"] = time.perf_counter() - started - timings["load_s"]
    probe = GapProbe(device)
    probed = ProbedRunner(runner, probe)
    t = time.perf_counter()
    side = ctx.first_size
    # The bench compiles before it measures (the bot does it in the background instead).
    if runner.compiled is not None:
        runner.compiled.build_now(warm_shapes([(side, side)], counts=(1,)))
    probed.generate([GenerationRequest(prompt="warm-up", seed=0, width=side, height=side)])
    timings["first_image_s"] = time.perf_counter() - started
    timings["first_call_s"] = time.perf_counter() - t
    rest = [(side, side), *(s for s in (warm_sizes or []) if s != (side, side))]
    timings["warmup_s"] = timings["first_call_s"] + warm_up(runner, rest, counts=(1, 2, 3, 4))
    timings["ready_s"] = time.perf_counter() - started
    probe.reset()
    return _Loaded(probed, probe, timings, report, mem_report)


def _compile_counters() -> dict[str, int]:
    try:
        from torch._dynamo.utils import counters

        return {k: int(v) for k, v in counters["stats"].items()}
    except Exception:  # counters are a debugging aid; their absence is not an error
        return {}


async def _through_worker(
    ctx: Context,
    loaded_factory: Callable[[], _Loaded],
    cases: list[str],
    with_queue: bool,
    tag: str,
) -> dict[str, Any]:
    from fluxbot.core.requests import GenerationRequest
    from fluxbot.engine.compiled import ShapeKey
    from fluxbot.engine.encoding import encode_png
    from fluxbot.serving.job import Job
    from fluxbot.serving.scheduler import Scheduler
    from fluxbot.serving.workers.local import LocalWorker

    device = ctx.device
    out_dir = ctx.work_dir / "images" / tag
    out_dir.mkdir(parents=True, exist_ok=True)
    encode_threads: set[str] = set()
    holder: dict[str, _Loaded] = {}

    def factory() -> Any:
        holder["loaded"] = loaded = loaded_factory()
        return loaded.runner

    def encode(result: Any) -> list[Path]:
        encode_threads.add(threading.current_thread().name)
        params = result.request.to_params()
        paths = []
        for image, seed in zip(result.images, result.seeds, strict=True):
            encoded = encode_png(image, params, seed)
            path = out_dir / f"{seed}-{result.request.width}x{result.request.height}.png"
            path.write_bytes(encoded.data)
            paths.append(path)
        return paths

    worker = LocalWorker(device, factory, encode=encode, timeout_s=3600.0)
    scheduler = Scheduler([worker], user_queue_cap=10_000, global_queue_cap=100_000)
    await scheduler.start()
    if not await worker.wait_ready():
        raise RuntimeError(f"the worker on {device} failed to load")
    loaded = holder["loaded"]
    probe = loaded.probe
    result: dict[str, Any] = {
        "timings": loaded.timings,
        "speed": _describe_speed(loaded.speed),
        "memory_profile": str(loaded.memory.plan.profile),
        "cases": {},
        "compile_counters_after_warmup": _compile_counters(),
    }
    serial = 0

    async def submit_all(requests: list[GenerationRequest]) -> list[tuple[Any, float]]:
        nonlocal serial
        handles = []
        for request in requests:
            serial += 1
            job = Job(job_id=f"{tag}-{serial}", user_id=serial, request=request)
            handles.append(scheduler.submit(job))

        async def wait(handle: Any) -> tuple[Any, float]:
            outcome = await handle.result()
            return outcome, time.perf_counter()

        return list(await asyncio.gather(*(wait(h) for h in handles)))

    for key in cases:
        case = CASES[key]
        reset_peak(device)

        def request(prompt: str, seed: int, case: Case = case) -> GenerationRequest:
            return GenerationRequest(
                prompt=prompt, seed=seed, width=case.width, height=case.height, count=case.count
            )

        compiled = holder["loaded"].runner.runner.compiled
        if compiled is not None:  # compiled before it is measured (idle device: no race)
            compiled.build_now([ShapeKey(case.count, case.width, case.height, 256)])
        await submit_all([request(_prompt("warm-up", 0), 0)])
        probe.reset()
        probe.starts.clear()
        probe.durations.clear()
        done = await submit_all([request(_prompt(key, i), i) for i in range(ctx.repeats)])
        outcomes = [o for o, _ in done]
        failed = [o.error for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"{tag} {key}: jobs failed: {failed[:2]}")
        stages = [
            {
                "text_encode": o.timings.text_encode,
                "denoise": o.timings.denoise,
                "decode": o.timings.decode,
            }
            for o in outcomes
        ]
        summary = _summarise(case, list(probe.durations), stages, [])
        summary["stages_s_per_image"]["image_encode"] = (
            median([o.timings.image_encode for o in outcomes]) / case.count
        )
        window = max(t for _, t in done) - probe.starts[0]
        summary["images_per_s"] = case.count * len(outcomes) / window
        summary["peak_vram_gib"] = peak_gib(device)
        result["cases"][key] = summary
        ctx.log(f"{tag} {key}: {summary['s_per_image']:.3f} s/image")

    # The reference image: same prompt and seed as stock's first image, to compare outputs.
    side = ctx.first_size
    reference = GenerationRequest(
        prompt=REFERENCE_PROMPT, seed=REFERENCE_SEED, width=side, height=side
    )
    ((ref_outcome, _),) = await submit_all([reference])
    ctx.references[tag] = ref_outcome.result.images[0]

    if with_queue:
        jobs = queue_jobs(ctx.queue_jobs)
        reset_peak(device)
        probe.reset()
        probe.starts.clear()
        probe.durations.clear()
        hits_before = loaded.runner.runner.embed_cache_hits
        t0 = time.perf_counter()
        done = await submit_all([GenerationRequest(**job) for job in jobs])
        wall = max(t for _, t in done) - t0
        images = sum(len(o.result.images) for o, _ in done if o.ok)
        gaps = [1000 * g for g in probe.gaps_s]
        result["queue"] = {
            "jobs": len(jobs),
            "images": images,
            "failed": sum(1 for o, _ in done if not o.ok),
            "wall_s": wall,
            "images_per_s": images / wall,
            "gpu_idle_between_jobs_ms": {
                "mean": float(np.mean(gaps)) if gaps else None,
                "median": float(np.median(gaps)) if gaps else None,
                "max": float(np.max(gaps)) if gaps else None,
                "n": len(gaps),
                "how": "CUDA events: end of a job's VAE decode to the next job's first "
                "text-encoder/transformer forward, on the device timeline",
            },
            "embed_cache_hits": loaded.runner.runner.embed_cache_hits - hits_before,
            "device_threads": sorted(probe.device_threads),
            "image_encode_threads": sorted(encode_threads),
            "encode_on_device_thread": bool(encode_threads & probe.device_threads),
            "peak_vram_gib": peak_gib(device),
        }
        q = result["queue"]
        ctx.log(
            f"{tag} queue: {q['images_per_s']:.2f} images/s, idle mean "
            f"{q['gpu_idle_between_jobs_ms']['mean']} ms"
        )
    result["compile_counters_after_runs"] = _compile_counters()
    await scheduler.shutdown(grace_s=60.0)
    await worker.close()
    # Drop the worker's references before freeing the device memory.
    holder.clear()
    return result


def _describe_speed(report: Any) -> dict[str, Any] | None:
    if report is None:
        return None
    plan = report.plan
    out = {
        "requested": str(plan.requested),
        "profile": str(plan.profile),
        "compile": plan.compile,
        "compile_mode": plan.compile_mode,
        "dynamic": plan.dynamic,
        "attention": report.attention,
        "fused_qkv": report.fused_qkv,
        "channels_last": report.channels_last,
        "compiled": report.compiled,
        "graphed": report.graphed,
        "reasons": list(plan.reasons),
    }
    if report.fp8 is not None:
        out["fp8_linears"] = report.fp8.converted
        out["fp8_saved_gib"] = report.fp8.saved_gib
    return out


def run_fluxbot(
    ctx: Context,
    profile_name: str,
    cases: list[str],
    with_queue: bool,
    *,
    warm_presets: bool = True,
    levers: bool = True,
) -> dict[str, Any]:
    from fluxbot.config import SpeedProfile
    from fluxbot.core.requests import ASPECT_PRESETS

    profile = SpeedProfile(profile_name)
    tag = profile_name if levers else "no-levers"
    cache_dir = ctx.work_dir / "cache" / tag
    sizes = list(ASPECT_PRESETS.values()) if warm_presets and ctx.warm_presets else []

    def factory() -> _Loaded:
        return load_fluxbot(ctx, profile, cache_dir, warm_sizes=sizes, levers=levers)

    result = asyncio.run(_through_worker(ctx, factory, cases, with_queue, tag))
    free_memory(ctx.device)
    return result


def compare_references(ctx: Context, base: str = "eager") -> dict[str, Any]:
    """Output differences on the same prompt and seed, against a bf16 image (eager's, else
    stock's)."""
    refs = ctx.references
    if base not in refs:
        base = "stock"
    if base not in refs:
        return {}
    return {
        f"{name} vs {base}": _image_delta(image, refs[base])
        for name, image in refs.items()
        if name != base
    }


# -- memory profiles (run in a child process each, so caps and peaks are the profile's own) -----


def run_memory_profile(
    ctx: Context, profile_name: str, cap_gib: float | None, speed_name: str = "eager"
) -> dict[str, Any]:
    from fluxbot.config import MemoryProfile, SpeedProfile
    from fluxbot.core.requests import GenerationRequest

    device = ctx.device
    if cap_gib is not None and torch.device(device).type == "cuda":
        dev = torch.device(device)
        index = torch.cuda.current_device() if dev.index is None else dev.index
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(cap_gib * 2**30 / total, index)
    reset_peak(device)
    loaded = load_fluxbot(
        ctx,
        SpeedProfile(speed_name),
        ctx.work_dir / "cache" / f"memory-{profile_name}",
        memory_profile=MemoryProfile(profile_name),
    )
    runner = loaded.runner
    gens = []
    for i in range(ctx.repeats):
        request = GenerationRequest(prompt=_prompt("memory", i), seed=i)
        t = time.perf_counter()
        runner.generate([request])
        gens.append(time.perf_counter() - t)
    return {
        "memory_profile": profile_name,
        "speed": _describe_speed(loaded.speed),
        "memory_reasons": list(loaded.memory.plan.reasons),
        "resident_gib_after_load": loaded.memory.resident_bytes / 2**30,
        "cap_gib": cap_gib,
        "timings": loaded.timings,
        "run_s": gens,
        "s_per_image": median(gens),
        "peak_vram_gib": peak_gib(device),
        "peak_reserved_gib": (
            torch.cuda.max_memory_reserved(device) / 2**30
            if torch.device(device).type == "cuda"
            else None
        ),
    }


def run_restart(ctx: Context, profile_name: str, t0: float) -> dict[str, Any]:
    """A fresh process's start: load, apply, warm the presets, then the first user image."""
    from fluxbot.config import SpeedProfile
    from fluxbot.core.requests import ASPECT_PRESETS, GenerationRequest

    imported = time.time() - t0
    loaded = load_fluxbot(
        ctx,
        SpeedProfile(profile_name),
        ctx.work_dir / "cache" / f"restart-{profile_name}",
        warm_sizes=list(ASPECT_PRESETS.values()),
    )
    ready = time.time() - t0
    loaded.runner.generate([GenerationRequest(prompt=REFERENCE_PROMPT, seed=REFERENCE_SEED)])
    return {
        "profile": profile_name,
        "imports_s": imported,
        "timings": loaded.timings,
        "ready_s_since_start": ready,
        "first_user_image_s_since_start": time.time() - t0,
        "first_warmup_image_s_since_start": imported + loaded.timings["first_image_s"],
    }


# -- micro-benchmarks of single levers --------------------------------------------------------


def _time_cuda(fn: Callable[..., Any], *args: Any, iters: int = 20) -> float:
    for _ in range(3):
        fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def run_micro(device: str, log: Log) -> dict[str, Any]:
    """SDPA backends and fp8 vs bf16 linears at FLUX's shapes (ms per call, median of 20)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fluxbot.engine.fp8 import Fp8Linear

    out: dict[str, Any] = {"attention_ms": {}, "linear_ms": {}}
    for batch, tokens in ((1, 4096 + 256), (4, 1024 + 256)):
        q, k, v = (
            torch.randn(batch, 24, tokens, 128, device=device, dtype=torch.bfloat16)
            for _ in range(3)
        )
        flops = 4 * batch * 24 * tokens * tokens * 128
        row = {}
        for name, backend in (
            ("default", None),
            ("flash", SDPBackend.FLASH_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION),
        ):
            try:
                sdpa = torch.nn.functional.scaled_dot_product_attention
                if backend is None:
                    ms = _time_cuda(sdpa, q, k, v)
                else:
                    with sdpa_kernel(backend):
                        ms = _time_cuda(sdpa, q, k, v)
                row[name] = {"ms": ms, "tflops": flops / ms / 1e9}
            except RuntimeError as exc:
                row[name] = {"error": str(exc).splitlines()[0][:120]}
        out["attention_ms"][f"b{batch}xL{tokens}"] = row
        log(f"attention b{batch} L{tokens}: {row}")
    for rows, k_in, n_out in ((4352, 3072, 12288), (4352, 12288, 3072), (4352, 3072, 9216)):
        x = torch.randn(rows, k_in, device=device, dtype=torch.bfloat16)
        linear = torch.nn.Linear(k_in, n_out, device=device, dtype=torch.bfloat16)
        fp8 = Fp8Linear.from_linear(linear, "dynamic")
        flops = 2 * rows * k_in * n_out
        with torch.no_grad():
            ref = linear(x).float()
            got = fp8(x).float()
            rel = float((got - ref).norm() / ref.norm())
        compiled = torch.compile(fp8, fullgraph=True)
        with torch.inference_mode():
            entry = {
                "bf16_ms": _time_cuda(linear, x),
                "fp8_eager_ms": _time_cuda(fp8, x),
                "fp8_compiled_ms": _time_cuda(compiled, x),
                "fp8_rel_error": rel,
            }
        entry["bf16_tflops"] = flops / entry["bf16_ms"] / 1e9
        entry["fp8_compiled_tflops"] = flops / entry["fp8_compiled_ms"] / 1e9
        out["linear_ms"][f"{rows}x{k_in}->{n_out}"] = entry
        log(f"linear {rows}x{k_in}->{n_out}: {entry}")
    return out
