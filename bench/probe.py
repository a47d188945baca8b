"""Lever probes: where a 1024x1024 image's time goes, one stage and one lever at a time.

`python -m bench probe` builds the full-size model on the GPU (no save/load: the weights'
values do not matter) and times, in one process on one card: the text encoders (fp32 `wo`
as `from_pretrained` leaves T5, bf16 `wo`, TF32, CUDA-graph replay), the VAE decode (cuDNN
benchmark, channels_last, compile), fp8 matmul variants at FLUX's shapes, and the transformer
under several compile settings, with a kernel-time breakdown from the profiler. It decides
nothing by itself: its numbers are what the speed profiles' choices are made from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.measure import cuda_median_ms

Log = Callable[[str], None]


def _time(fn: Callable[[], Any], iters: int = 10, warm: int = 2) -> float:
    return cuda_median_ms(fn, iters, warm)


def _t5_wo_to(encoder: torch.nn.Module, dtype: torch.dtype) -> None:
    for name, module in encoder.named_modules():
        if name.endswith("DenseReluDense"):
            module.wo.to(dtype)


def probe_text(pipe: Any, log: Log) -> dict[str, Any]:
    device = pipe._execution_device
    out: dict[str, Any] = {}
    prompt = "a photograph of a red fox in the snow, golden hour, detailed fur"
    t5, clip = pipe.text_encoder_2, pipe.text_encoder
    ids = pipe.tokenizer_2(
        prompt, padding="max_length", max_length=256, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    clip_ids = pipe.tokenizer(
        prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids.to(device)

    def encode() -> Any:
        return pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=device, max_sequence_length=256
        )

    def tokenize() -> Any:
        pipe.tokenizer_2(prompt, padding="max_length", max_length=256, truncation=True)
        pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True)

    with torch.inference_mode():
        _t5_wo_to(t5, torch.float32)  # as from_pretrained(dtype=bf16) leaves T5-XXL
        out["tokenize_ms"] = _time(tokenize)
        out["encode_prompt_fp32_wo_ms"] = _time(encode)
        out["t5_fp32_wo_ms"] = _time(lambda: t5(ids))
        out["clip_ms"] = _time(lambda: clip(clip_ids))
        torch.backends.cuda.matmul.allow_tf32 = True
        out["t5_fp32_wo_tf32_ms"] = _time(lambda: t5(ids))
        out["encode_prompt_fp32_wo_tf32_ms"] = _time(encode)
        torch.backends.cuda.matmul.allow_tf32 = False
        reference = t5(ids)[0].float()
        _t5_wo_to(t5, torch.bfloat16)
        out["t5_bf16_wo_ms"] = _time(lambda: t5(ids))
        out["encode_prompt_bf16_wo_ms"] = _time(encode)
        bf16 = t5(ids)[0].float()
        out["t5_bf16_wo_rel_diff"] = float((bf16 - reference).norm() / reference.norm())
        # CUDA graph of both encoders at their fixed shapes.
        static_ids, static_clip = ids.clone(), clip_ids.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                t5(static_ids)
                clip(static_clip, output_hidden_states=False)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        started = time.perf_counter()
        with torch.cuda.graph(graph):
            t5_out = t5(static_ids)[0]
            clip_out = clip(static_clip, output_hidden_states=False).pooler_output
        out["graph_capture_ms"] = 1000 * (time.perf_counter() - started)
        out["graph_replay_both_ms"] = _time(graph.replay)
        graph.replay()
        out["graph_rel_diff"] = float((t5_out.float() - bf16).norm() / bf16.norm())
        del graph, t5_out, clip_out
    log(f"text: {out}")
    return out


def probe_vae(pipe: Any, log: Log, side: int = 1024) -> dict[str, Any]:
    device = pipe._execution_device
    vae = pipe.vae
    latents = torch.randn(1, 16, side // 8, side // 8, device=device, dtype=torch.bfloat16)
    out: dict[str, Any] = {}

    def decode() -> Any:
        return vae.decode(latents, return_dict=False)[0]

    with torch.inference_mode():
        torch.backends.cudnn.benchmark = False
        out["eager_ms"] = _time(decode)
        torch.backends.cudnn.benchmark = True
        out["eager_cudnn_benchmark_ms"] = _time(decode)
        vae.to(memory_format=torch.channels_last)
        out["channels_last_benchmark_ms"] = _time(decode)
        vae.decoder.compile(fullgraph=True, dynamic=True)
        started = time.perf_counter()
        decode()
        out["compile_first_call_s"] = time.perf_counter() - started
        out["compiled_channels_last_benchmark_ms"] = _time(decode)
        torch.backends.cudnn.benchmark = False
        out["compiled_channels_last_ms"] = _time(decode)
        torch.backends.cudnn.benchmark = True
    log(f"vae: {out}")
    return out


def probe_fp8(device: str, log: Log) -> dict[str, Any]:
    """bf16 vs fp8 matmuls alone (inputs already quantised), at the transformer's shapes."""
    fp8 = torch.float8_e4m3fn
    out: dict[str, Any] = {}
    shapes = [
        (4352, 3072, 9216),  # double block q/k/v (fused)
        (4352, 3072, 12288),  # MLP up / single block proj_mlp
        (4352, 12288, 3072),  # MLP down
        (4352, 15360, 3072),  # single block proj_out
        (4352, 3072, 21504),  # single block q/k/v + proj_mlp as one matmul
        (4352, 3072, 3072),  # attention output
    ]
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
        aq, wq = a.to(fp8), w.to(fp8)
        row_a = torch.ones(m, 1, device=device)
        row_w = torch.ones(1, n, device=device)
        one = torch.ones((), device=device)
        flops = 2 * m * k * n
        entry: dict[str, Any] = {"bf16": _time(lambda a=a, w=w: a @ w.t(), iters=20)}
        variants = {
            "fp8_rowwise": (row_a, row_w, False),
            "fp8_rowwise_fast": (row_a, row_w, True),
            "fp8_tensorwise": (one, one, False),
            "fp8_tensorwise_fast": (one, one, True),
        }
        for name, (sa, sb, fast) in variants.items():
            try:
                entry[name] = _time(
                    lambda sa=sa, sb=sb, fast=fast, aq=aq, wq=wq: torch._scaled_mm(
                        aq,
                        wq.t(),
                        scale_a=sa,
                        scale_b=sb,
                        out_dtype=torch.bfloat16,
                        use_fast_accum=fast,
                    ),
                    iters=20,
                )
            except RuntimeError as exc:
                entry[name] = str(exc).splitlines()[0][:100]
        entry["tflops"] = {
            key: round(flops / value / 1e9)
            for key, value in entry.items()
            if isinstance(value, float)
        }
        out[f"{m}x{k}->{n}"] = entry
        log(f"matmul {m}x{k}->{n}: {entry['tflops']}")
    return out


def _denoise(pipe: Any, embeds: tuple[torch.Tensor, torch.Tensor], side: int) -> Any:
    generator = torch.Generator("cpu").manual_seed(0)
    return pipe(
        prompt_embeds=embeds[0],
        pooled_prompt_embeds=embeds[1],
        width=side,
        height=side,
        num_inference_steps=4,
        guidance_scale=0.0,
        max_sequence_length=256,
        output_type="latent",
        generator=generator,
    ).images


def _kernel_breakdown(fn: Callable[[], Any]) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        fn()
        torch.cuda.synchronize()
    wall = 1000 * (time.perf_counter() - started)
    groups: dict[str, float] = {}
    total = 0.0
    for event in prof.key_averages():
        device_us = getattr(event, "device_time_total", None) or getattr(
            event, "cuda_time_total", 0
        )
        if event.device_type.name != "CUDA" or not device_us:
            continue
        name = event.key.lower()
        if any(s in name for s in ("gemm", "cutlass", "sm90_xmma", "nvjet", "matmul")):
            group = "matmul"
        elif any(s in name for s in ("attention", "fmha", "flash", "cudnn")):
            group = "attention"
        elif "triton" in name:
            group = "triton (fused elementwise/norm)"
        else:
            group = "other"
        groups[group] = groups.get(group, 0.0) + device_us / 1000
        total += device_us / 1000
    top = sorted(
        (
            (e.key[:90], (getattr(e, "device_time_total", 0) or 0) / 1000)
            for e in prof.key_averages()
            if e.device_type.name == "CUDA"
        ),
        key=lambda item: -item[1],
    )[:12]
    return {"wall_ms": wall, "kernel_ms": total, "groups_ms": groups, "top_kernels_ms": top}


def probe_transformer(pipe: Any, log: Log, budget_s: float, side: int = 1024) -> dict[str, Any]:
    from fluxbot.engine.speed import fuse_qkv_

    device = pipe._execution_device
    embeds = (
        torch.randn(1, 256, 4096, device=device, dtype=torch.bfloat16),
        torch.randn(1, 768, device=device, dtype=torch.bfloat16),
    )
    transformer = pipe.transformer
    fuse_qkv_(transformer)
    out: dict[str, Any] = {}
    started = time.perf_counter()
    with torch.inference_mode():
        out["eager_denoise_ms"] = _time(lambda: _denoise(pipe, embeds, side), iters=5)
        log(f"transformer eager: {out['eager_denoise_ms']:.1f} ms per 4 steps")
        variants: list[tuple[str, dict[str, Any]]] = [
            ("regional_dynamic", {"fullgraph": True, "dynamic": True}),
            ("regional_static", {"fullgraph": True, "dynamic": False}),
            (
                "regional_static_cudagraphs",
                {"fullgraph": True, "dynamic": False, "mode": "reduce-overhead"},
            ),
            (
                "regional_static_max_autotune",
                {"fullgraph": True, "dynamic": False, "mode": "max-autotune-no-cudagraphs"},
            ),
        ]
        for name, options in variants:
            if time.perf_counter() - started > budget_s:
                out[name] = "skipped: time budget"
                continue
            torch._dynamo.reset()
            transformer.compile_repeated_blocks(**options)
            compile_started = time.perf_counter()
            try:
                _denoise(pipe, embeds, side)
            except Exception as exc:  # a variant that fails to compile is a result too
                out[name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
                log(f"transformer {name}: {out[name]}")
                continue
            first = time.perf_counter() - compile_started
            entry = {
                "first_call_s": first,
                "denoise_ms": _time(lambda: _denoise(pipe, embeds, side), iters=5),
            }
            if name in ("regional_dynamic", "regional_static"):
                try:
                    entry["profile"] = _kernel_breakdown(lambda: _denoise(pipe, embeds, side))
                except Exception as exc:
                    entry["profile"] = f"failed: {exc!r}"
            out[name] = entry
            log(f"transformer {name}: {json.dumps(entry)[:600]}")
    return out


def probe_fp8_quality(pipe: Any, log: Log, side: int = 1024) -> dict[str, Any]:
    """fp8 (the fast profile's linears) against bf16 on the same seed, where it shows: in the
    transformer's own contribution to the latents. With random weights the decoded image is
    mostly the initial noise, so an image-level difference would hide the transformer's error."""
    import numpy as np

    from fluxbot.engine.fp8 import flux_transformer_chooser, quantize_linears_
    from fluxbot.engine.pixels import to_pil
    from fluxbot.engine.speed import fuse_qkv_

    device = pipe._execution_device
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        getattr(pipe, name).eval()
    fuse_qkv_(pipe.transformer)
    with torch.inference_mode():
        prompt_embeds, pooled, _ = pipe.encode_prompt(
            prompt="a lighthouse on a cliff at dusk", prompt_2=None, device=device
        )
        channels = pipe.transformer.config.in_channels // 4
        generator = torch.Generator("cpu").manual_seed(7)
        noise = pipe.prepare_latents(1, channels, side, side, torch.bfloat16, device, generator)[0]

        def denoise() -> torch.Tensor:
            return pipe(
                prompt_embeds=prompt_embeds,
                pooled_prompt_embeds=pooled,
                latents=noise.clone(),
                width=side,
                height=side,
                num_inference_steps=4,
                guidance_scale=0.0,
                output_type="latent",
            ).images.float()

        def image(packed: torch.Tensor) -> np.ndarray:
            latents = pipe._unpack_latents(packed, side, side, pipe.vae_scale_factor)
            latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            decoded = pipe.vae.decode(latents.to(torch.bfloat16), return_dict=False)[0]
            return np.asarray(to_pil(decoded)[0]).astype(np.float64)

        bf16 = denoise()
        bf16_image = image(bf16)
        report = quantize_linears_(
            pipe.transformer, flux_transformer_chooser(dynamic=True, modulation=False), device
        )
        fp8 = denoise()
        fp8_image = image(fp8)
    start = noise.float()
    contribution = bf16 - start
    mse = float(((fp8_image - bf16_image) ** 2).mean())
    out = {
        "fp8_linears": report.converted,
        "latents_rel_diff": float((fp8 - bf16).norm() / bf16.norm()),
        "transformer_contribution_rel_diff": float(
            ((fp8 - start) - contribution).norm() / contribution.norm()
        ),
        "transformer_contribution_vs_latents": float(contribution.norm() / bf16.norm()),
        "image_mean_abs_diff": float(np.abs(fp8_image - bf16_image).mean()),
        "image_psnr_db": float(10 * np.log10(255**2 / mse)) if mse else float("inf"),
    }
    log(f"fp8 quality: {out}")
    return out


def run_probe(
    out_dir: Path, device: str, budget_s: float, log: Log, only: Sequence[str] = ()
) -> dict[str, Any]:
    from bench.model import build_pipeline
    from bench.report import environment

    result: dict[str, Any] = {"environment": environment(device)}
    path = out_dir / "probe.json"
    out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        path.write_text(json.dumps(result, indent=1, default=str))

    started = time.perf_counter()
    pipe = build_pipeline("full", device)
    torch.cuda.synchronize()
    log(f"built in {time.perf_counter() - started:.1f} s")
    probes: dict[str, Callable[[], Any]] = {
        "fp8_matmuls": lambda: probe_fp8(device, log),
        "text": lambda: probe_text(pipe, log),
        "vae": lambda: probe_vae(pipe, log),
        "transformer": lambda: probe_transformer(pipe, log, budget_s),
        "fp8_quality": lambda: probe_fp8_quality(pipe, log),
    }
    for name, probe in probes.items():
        if only and name not in only:
            continue
        try:
            result[name] = probe()
        except Exception as exc:
            result[name] = f"failed: {type(exc).__name__}: {exc}"
            log(f"{name} failed: {exc!r}")
        save()
    return result
