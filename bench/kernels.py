"""Kernel by kernel: where the compiled transformer's time goes, and what the levers change.

`python -m bench kernels` builds the full-size model on the GPU (random weights, no save) and,
in one process on one card, measures at 1024x1024 x1: stock diffusers per image, then
fluxbot's `compile` and `fast` profiles through FluxRunner (text encoding, 4 steps, decode) with
and without CUDA graphs of the denoising steps, and `fast` again without the single blocks'
one-pass GELU + concat + fp8 quantise (fluxbot.engine.fp8_fused: Inductor's two kernels
instead), and `fast` with Inductor's coordinate-descent tuning of each Triton kernel; `--only`
names other phases (PHASE_CHANGES: each switches one lever off). For each
it records the torch profiler's kernel-time breakdown of a 4-step denoise (fp8 / bf16 GEMMs,
attention, Triton reductions / persistent reductions / pointwise, copies) and the gaps, and the
same for the text encoding and the VAE decode.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.measure import cuda_median_ms

Log = Callable[[str], None]
SIDE = 1024
PROMPT = "a lighthouse on a cliff at dusk, oil painting, run {}"


def _ms(fn: Callable[[], Any], iters: int = 5, warm: int = 1) -> float:
    return cuda_median_ms(fn, iters, warm)


def _group(name: str) -> str:
    n = name.lower()
    if "gelu_cat_quantize" in n:
        return "fused quantise (fluxbot)"
    if "qk_norm_rope" in n:
        return "q/k norm + RoPE (fluxbot)"
    if n.startswith("triton"):  # Inductor names kernels after every op fused in, attention too
        return _triton_group(n)
    if any(s in n for s in ("attention", "fmha", "flash", "sdpa")):
        return "attention"
    if "conv" in n or "fprop" in n:  # cuDNN's convolutions (the VAE), implicit GEMMs included
        return "convolution"
    if "nvjet" in n or "gemm" in n or "cutlass" in n or "xmma" in n or "matmul" in n:
        return "fp8 gemm" if ("qq" in n or "e4m3" in n or "f8" in n) else "bf16 gemm"
    if "cudnn" in n:
        return "other cudnn"
    if "memcpy" in n or "copy" in n or "cat" in n:
        return "copies"
    return "other aten"


def _triton_group(n: str) -> str:
    if n.startswith("triton_red"):
        return "triton reduction (looped)"
    if n.startswith("triton_per"):
        return "triton persistent reduction"
    if n.startswith("triton_poi"):
        return "triton pointwise"
    return "triton other"


def kernel_breakdown(fn: Callable[[], Any]) -> dict[str, Any]:
    """Device time by kernel group over one call of `fn`, the busiest kernels, and the gaps."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        fn()
        torch.cuda.synchronize()
    wall = 1000 * (time.perf_counter() - started)
    groups: dict[str, float] = {}
    kernels: list[tuple[str, float, int]] = []
    total = 0.0
    for event in prof.key_averages():
        if event.device_type.name != "CUDA":
            continue
        us = getattr(event, "device_time_total", 0) or getattr(event, "cuda_time_total", 0)
        if not us:
            continue
        group = _group(event.key)
        groups[group] = groups.get(group, 0.0) + us / 1000
        total += us / 1000
        kernels.append((event.key[:110], us / 1000, event.count))
    kernels.sort(key=lambda k: -k[1])
    return {
        "wall_ms": wall,
        "kernel_ms": total,
        "gaps_ms": wall - total,
        "groups_ms": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
        "top_kernels": [{"name": n, "ms": ms, "calls": c} for n, ms, c in kernels[:25]],
    }


def _denoise(runner: Any, embeds: tuple[torch.Tensor, torch.Tensor]) -> Any:
    noise = runner.initial_noise([0], SIDE, SIDE)
    return runner.pipe(
        prompt_embeds=embeds[0],
        pooled_prompt_embeds=embeds[1],
        latents=noise,
        width=SIDE,
        height=SIDE,
        num_inference_steps=4,
        guidance_scale=0.0,
        max_sequence_length=256,
        output_type="latent",
    ).images


class _Counter:
    def __init__(self) -> None:
        self.i = 0

    def prompt(self) -> str:
        self.i += 1
        return PROMPT.format(self.i)


def _measure_runner(runner: Any, log: Log, tag: str, counter: _Counter) -> dict[str, Any]:
    """Per image through FluxRunner (a new prompt each time), stages, and the 4-step profile."""
    from fluxbot.core.requests import GenerationRequest

    def one() -> Any:
        request = GenerationRequest(prompt=counter.prompt(), seed=1, width=SIDE, height=SIDE)
        return runner.generate([request])[0]

    results = [one() for _ in range(6)][1:]
    per_image = sorted(
        r.timings.text_encode + r.timings.denoise + r.timings.decode for r in results
    )
    entry: dict[str, Any] = {
        "s_per_image": per_image[len(per_image) // 2],
        "runs_s": per_image,
        "path": results[-1].path,
        "stages_s": {
            "text_encode": sorted(r.timings.text_encode for r in results)[2],
            "denoise": sorted(r.timings.denoise for r in results)[2],
            "decode": sorted(r.timings.decode for r in results)[2],
        },
    }
    embeds = runner.encode("profile prompt", 256)
    paths = runner.compiled
    context = paths.active(True) if paths is not None else _null()
    with context, torch.inference_mode():
        entry["denoise_4_steps_ms"] = _ms(
            lambda: _denoise(runner, (embeds.prompt_embeds, embeds.pooled))
        )
        entry["profile"] = kernel_breakdown(
            lambda: _denoise(runner, (embeds.prompt_embeds, embeds.pooled))
        )
        # The other two stages of an image, kernel by kernel: a new prompt each call (the
        # runner's embedding cache would answer a repeated one), and the VAE decode with its
        # conversion to PIL.
        entry["text_profile"] = kernel_breakdown(lambda: runner.encode(counter.prompt(), 256))
        packed = _denoise(runner, (embeds.prompt_embeds, embeds.pooled))
        entry["decode_profile"] = kernel_breakdown(lambda: runner._decode(packed, SIDE, SIDE, None))
    for stage in ("text_profile", "decode_profile"):
        prof = entry[stage]
        log(
            f"{tag}: {stage} wall {prof['wall_ms']:.1f} ms, kernels {prof['kernel_ms']:.1f} ms, "
            + json.dumps({k: round(v, 1) for k, v in prof["groups_ms"].items()})
        )
    log(
        f"{tag}: {entry['s_per_image']:.3f} s/image ({entry['path']}), denoise "
        f"{entry['denoise_4_steps_ms']:.1f} ms, kernels {entry['profile']['kernel_ms']:.1f} ms, "
        f"gaps {entry['profile']['gaps_ms']:.1f} ms, groups "
        + json.dumps({k: round(v, 1) for k, v in entry["profile"]["groups_ms"].items()})
    )
    return entry


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stock(pipe: Any, log: Log, counter: _Counter) -> dict[str, Any]:
    def one() -> None:
        pipe(
            prompt=counter.prompt(),
            width=SIDE,
            height=SIDE,
            num_inference_steps=4,
            guidance_scale=0.0,
            max_sequence_length=256,
            generator=torch.Generator("cpu").manual_seed(1),
        )

    s = _ms(one, iters=5, warm=1) / 1000
    log(f"stock: {s:.3f} s/image")
    return {"s_per_image": s}


PHASE_CHANGES: dict[str, dict[str, bool]] = {
    "fast_unfused": {"fused_quantize": False},
    "compile_plain": {"gemm_epilogues": False},
    "compile_noqk": {"qk_rope": False},
    "fast_noqk": {"qk_rope": False},
    "fast_noff": {"fused_feed_forward": False},
    "fast_nonormq": {"norm_quantize": False},
    "fast_persistent": {"persistent_reductions": True},
    "compile_persistent": {"persistent_reductions": True},
}
"""Phases that switch one lever of their profile off (or a candidate on), to measure it."""


def epilogue_check(
    rows: int = 4352, width: int = 3072, hidden: int = 12288, device: str = "cuda"
) -> dict[str, float]:
    """fluxbot.engine.bf16_epilogues' ops on the card against the math they replace, at the
    single blocks' sizes: the largest differences in bf16 (and whether the GELU is tanh's)."""
    import torch.nn.functional as F

    from fluxbot.engine.bf16_epilogues import concat_linear, linear_gelu_tanh

    g = torch.Generator(device).manual_seed(0)

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device=device) * scale).to(torch.bfloat16)

    x, w, b = rand(rows, width), rand(hidden, width, scale=width**-0.5), rand(hidden)
    fused = linear_gelu_tanh(x, w, b).float()
    linear = F.linear(x, w, b)
    a, wo, bo = rand(rows, width), rand(width, width + hidden, scale=hidden**-0.5), rand(width)
    split = concat_linear(a, fused.to(torch.bfloat16), wo, bo).float()
    whole = F.linear(torch.cat([a, fused.to(torch.bfloat16)], dim=-1), wo, bo).float()
    return {
        "gelu_vs_tanh_max_abs": (fused - F.gelu(linear, approximate="tanh").float())
        .abs()
        .max()
        .item(),
        "gelu_vs_erf_max_abs": (fused - F.gelu(linear).float()).abs().max().item(),
        "concat_linear_max_abs": (split - whole).abs().max().item(),
        "concat_linear_out_max_abs": whole.abs().max().item(),
    }


def qk_rope_check(
    text: int = 256, image: int = 4096, heads: int = 24, width: int = 128, device: str = "cuda"
) -> dict[str, float]:
    """fluxbot::qk_norm_rope on the card at FLUX's 1024x1024 sizes, against the torch ops it
    replaces (eager, and compiled by Inductor): largest difference, share of values that differ
    (rounding), and microseconds per call of queries or keys for a double block (text + image,
    two norms) and a single block (one norm over both)."""
    from fluxbot.engine.qk_rope import qk_norm_rope, qk_norm_rope_reference

    g = torch.Generator(device).manual_seed(0)
    inner = heads * width

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device=device) * scale).to(torch.bfloat16)

    angles = torch.rand(text + image, width // 2, generator=g, device=device) * 100
    cos, sin = angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)
    txt = rand(1, text, 3 * inner, scale=3)[..., :inner].unflatten(-1, (heads, width))
    img = rand(1, image, 3 * inner, scale=3)[..., :inner].unflatten(-1, (heads, width))
    whole = rand(1, text + image, 3 * inner, scale=3)[..., :inner].unflatten(-1, (heads, width))
    w_txt, w_img = rand(width), rand(width)
    compiled = torch.compile(qk_norm_rope_reference, fullgraph=True)
    cases = {
        "double": (txt, img, w_txt, w_img, cos, sin, 1e-6),
        "single": (whole[:, :0], whole, w_img, w_img, cos, sin, 1e-6),
    }
    out: dict[str, float] = {}
    calls = 50
    for name, args in cases.items():
        got = qk_norm_rope(*args).float()
        want = qk_norm_rope_reference(*args).float()
        out[f"{name}_max_abs"] = (got - want).abs().max().item()
        out[f"{name}_share_differing"] = (got != want).float().mean().item()
        for label, fn in (
            ("kernel", qk_norm_rope),
            ("eager", qk_norm_rope_reference),
            ("inductor", compiled),
        ):
            ms = _ms(lambda fn=fn, args=args: [fn(*args) for _ in range(calls)], iters=5)  # type: ignore[misc]
            out[f"{name}_{label}_us"] = 1000 * ms / calls
    return out


def _runner_with(pipe: Any, profile: Any, log: Log, **plan_changes: Any) -> tuple[Any, float]:
    from fluxbot.engine.pipeline import FluxRunner
    from fluxbot.engine.speed import DeviceFeatures, apply_speed_profile, plan_speed, warm_shapes

    plan_changes.setdefault("step_graphs", True)  # measured here with and without
    plan = replace(plan_speed(profile, DeviceFeatures.probe("cuda")), **plan_changes)
    report = apply_speed_profile(pipe, plan)
    log(
        f"{profile}: one-pass fp8 quantise in {report.fused_blocks} single blocks and "
        f"{report.fused_feed_forwards} feed-forwards; one-pass norm + quantise in "
        f"{report.norm_quantize_blocks} blocks"
    )
    runner = FluxRunner(pipe, "cuda", model_name="random", dtype=torch.bfloat16, placed=True)
    if report.paths is not None:
        runner.attach_compiled(report.paths)
        started = time.perf_counter()
        report.paths.build_now(warm_shapes([(SIDE, SIDE)], counts=(1,)))
        seconds = time.perf_counter() - started
        log(
            f"{profile}: compiled 1024x1024x1 in {seconds:.1f} s (graphs: "
            f"{report.paths.graphs.captured() if report.paths.graphs else 'off'})"
        )
        if report.paths.disabled:
            raise RuntimeError(f"compiled path disabled: {report.paths.disabled}")
        return runner, seconds
    return runner, 0.0


def _with_and_without_graphs(runner: Any, log: Log, tag: str, counter: _Counter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    graphs = runner.compiled.graphs if runner.compiled is not None else None
    if graphs is not None and graphs.failed is None and graphs.captured():
        out["step_graphs"] = _measure_runner(runner, log, f"{tag} + step graphs", counter)
        graphs.failed = "switched off for the comparison"
    elif graphs is not None:
        out["step_graphs"] = {"error": graphs.failed or "nothing captured"}
    out["no_graphs"] = _measure_runner(runner, log, f"{tag}", counter)
    if graphs is not None and graphs.failed == "switched off for the comparison":
        graphs.failed = None
    return out


def run_kernels(out_dir: Path, log: Log, only: list[str], budget_s: float = 1e9) -> dict[str, Any]:
    import torch._inductor.config as inductor_config

    from bench.model import build_pipeline
    from bench.report import environment
    from bench.runs import apply_bot_switches
    from fluxbot.config import SpeedProfile

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernels.json"
    result: dict[str, Any] = {"environment": environment("cuda"), "side": SIDE}

    def save() -> None:
        path.write_text(json.dumps(result, indent=1, default=str))

    counter = _Counter()
    phases = only or ["stock", "fast", "compile", "fast_unfused"]
    if "compile" in phases or "compile_plain" in phases:
        result["epilogue_check"] = epilogue_check()
        log(f"GEMM epilogues against their unfused math: {result['epilogue_check']}")
    if any(p.startswith(("compile", "fast")) for p in phases):
        try:
            result["qk_rope_check"] = qk_rope_check()
        except Exception as exc:
            result["qk_rope_check"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        log(f"q/k norm + RoPE op against the torch ops: {result['qk_rope_check']}")
    save()
    begun = time.perf_counter()
    pipe = build_pipeline("full", "cuda")
    if "stock" in phases:
        try:
            result["stock"] = _stock(pipe, log, counter)
        except Exception as exc:
            result["stock"] = {"error": repr(exc)}
        save()
    apply_bot_switches("cuda")
    for phase in phases:
        if phase == "stock":
            continue
        if time.perf_counter() - begun > budget_s:
            result[phase] = {"error": "skipped: time budget"}
            log(f"{phase}: skipped (time budget)")
            continue
        started = time.perf_counter()
        try:
            torch._dynamo.reset()
            # *_tuned: Inductor tunes each Triton kernel's block sizes (coordinate descent).
            inductor_config.coordinate_descent_tuning = phase.endswith("_tuned")
            if pipe is None:
                pipe = build_pipeline("full", "cuda")
            compile_phase = phase.startswith("compile")
            profile = SpeedProfile.COMPILE if compile_phase else SpeedProfile.FAST
            changes = dict(PHASE_CHANGES.get(phase, {}))
            runner, compile_s = _runner_with(pipe, profile, log, **changes)
            entry = _with_and_without_graphs(runner, log, phase, counter)
            entry["first_compile_s"] = compile_s
            result[phase] = entry
        except Exception as exc:
            log(f"{phase} failed: {exc!r}")
            result[phase] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        finally:
            inductor_config.coordinate_descent_tuning = False
        result[phase]["phase_s"] = time.perf_counter() - started
        save()
        # A fresh model per profile: the fp8 conversion and compiled graphs stay with it.
        runner = None
        pipe = None
        gc.collect()
        torch.cuda.empty_cache()
    stock = result.get("stock", {}).get("s_per_image")
    lines = [f"stock {stock}"]
    for phase in phases[1:]:
        for variant in ("step_graphs", "no_graphs"):
            entry = result.get(phase, {}).get(variant, {})
            s = entry.get("s_per_image")
            if s and stock:
                prof = entry["profile"]
                lines.append(
                    f"{phase:16s} {variant:11s} {s:.3f} s/img {stock / s:.2f}x  denoise "
                    f"{entry['denoise_4_steps_ms']:.0f} ms kernels {prof['kernel_ms']:.0f} "
                    f"gaps {prof['gaps_ms']:.0f}"
                )
    result["table"] = lines
    save()
    for line in lines:
        log(line)
    return result
