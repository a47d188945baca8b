"""`python -m bench images`: jobs that start from an image, stock diffusers against fluxbot.

One process, one card: FLUX.1-schnell's architecture with random weights built on the device
(no save/load: this run measures the image pipelines, not loading). A 1024² text-to-image
source, then per run: vary 0.35 and 0.7, remix 0.6, upscale to 2048², zoom out ×2 and pan left
(1536x1024), seconds per image (median after a warm-up call, which also compiles) and peak
VRAM. Stock is diffusers' FluxImg2ImgPipeline / FluxInpaintPipeline made with `from_pipe`
(bf16), prompt strings, decode inside, upscale as one 2048² img2img pass; fluxbot is
`FluxRunner.generate` with each speed profile in turn, each on a freshly built model (the stock
one for the first: fp8 weights and compiled graphs are not reversible; timings do not depend
on the random values), distinct prompts per call so no embedding cache flatters it.
Results are rewritten after every measurement, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.measure import median, peak_gib, reset_peak, sync

STEPS = 4
SEQ = 256
OPS = ("text", "vary_0.35", "vary_0.7", "remix", "upscale_2048", "zoom_2", "pan_left")


def _gib(device: str) -> float:
    if torch.device(device).type != "cuda":
        return 0.0
    return torch.cuda.memory_allocated(device) / 2**30


class Recorder:
    """Results as they come, written to `path` after each one."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "runs": {}, "memory": {}, "notes": []}

    def put(self, run: str, op: str, value: dict[str, Any]) -> None:
        self.data["runs"].setdefault(run, {})[op] = value
        self.flush()

    def flush(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2))


def _measure(
    device: str, call: Callable[[int], Any], repeats: int, compiling: Any = None
) -> tuple[dict[str, Any], Any]:
    """Warm-up call (timed apart: its shape may compile, in the background where `compiling`
    is the runner's CompiledPaths, waited for here), then `repeats` timed calls; peak of all."""
    reset_peak(device)
    t = time.perf_counter()
    out = call(0)
    if compiling is not None:
        compiling.wait_idle(timeout_s=900)
    sync(device)
    first = time.perf_counter() - t
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        out = call(i + 1)
        sync(device)
        times.append(time.perf_counter() - t)
    peak = peak_gib(device) or 0.0
    return {"s": median(times), "times": times, "first_s": first, "peak_gib": peak}, out


def _short(profile: dict[str, Any]) -> dict[str, Any]:
    """A kernel breakdown without its long kernel list (the ten busiest stay)."""
    return {**profile, "top_kernels": profile["top_kernels"][:10]}


def _profile_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Where each op's time went, where measured: stages, and kernel groups of one call."""
    lines = []
    for name, results in runs.items():
        for op, stats in results.items():
            parts = []
            if "stages_s" in stats:
                parts.append(
                    "stages "
                    + ", ".join(f"{k} {1000 * v:.0f}" for k, v in stats["stages_s"].items())
                )
            if "profile" in stats:
                prof = stats["profile"]
                groups = ", ".join(f"{k} {v:.0f}" for k, v in prof["groups_ms"].items() if v >= 1)
                parts.append(
                    f"profiled wall {prof['wall_ms']:.0f}, kernels {prof['kernel_ms']:.0f} "
                    f"({groups}), gaps {prof['gaps_ms']:.0f}"
                )
            if parts:
                lines.append(f"- {name} {op} (ms): " + "; ".join(parts))
    return lines + ([""] if lines else [])


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def run_images(
    device: str,
    out: Path,
    *,
    repeats: int,
    deadline_s: float,
    profiles: list[str],
    arch: str = "full",
    side: int = 1024,
    kernel_profiles: bool = False,
) -> Path:
    from diffusers import FluxImg2ImgPipeline, FluxInpaintPipeline

    from bench.kernels import kernel_breakdown
    from bench.model import build_pipeline
    from bench.runs import apply_bot_switches, plain_script_switches
    from fluxbot.config import SpeedProfile
    from fluxbot.core.edits import (
        ImageEdit,
        Operation,
        PanDirection,
        pan_layout,
        tile_grid,
        zoom_layout,
    )
    from fluxbot.core.requests import GenerationRequest
    from fluxbot.engine.image_ops import outpaint_inputs
    from fluxbot.engine.pipeline import FluxRunner
    from fluxbot.engine.speed import DeviceFeatures, apply_speed_profile, plan_speed

    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {message}", flush=True)

    cuda = torch.device(device).type == "cuda"
    card = torch.cuda.get_device_name(device) if cuda else "cpu"
    name = card.lower().replace(" ", "-")
    path = out / f"{time.strftime('%Y-%m-%d')}-{name}-images.json"
    meta = {
        "device": card,
        "arch": arch,
        "torch": torch.__version__,
        "steps": STEPS,
        "max_sequence_length": SEQ,
        "repeats": repeats,
    }
    import diffusers

    meta["diffusers"] = diffusers.__version__
    rec = Recorder(path, meta)
    plain_script_switches()
    pipe = build_pipeline(arch, device)
    pipe.to(device)
    dtype = torch.bfloat16 if cuda else torch.float32
    sync(device)
    rec.data["memory"]["weights_gib"] = _gib(device)
    log(f"built {arch} model: {_gib(device):.1f} GiB")
    big = 2 * side

    common = {"num_inference_steps": STEPS, "guidance_scale": 0.0, "max_sequence_length": SEQ}
    prompt = "a lighthouse on a cliff at dawn"

    # -- stock --------------------------------------------------------------------------------
    stats, images = _measure(
        device,
        lambda i: pipe(prompt=f"{prompt} {i}", width=side, height=side, **common).images,
        repeats,
    )
    source = images[0]
    rec.put("stock", "text", stats)
    log(f"stock text {stats['s']:.3f} s")
    stock_pipes = {
        "img2img": FluxImg2ImgPipeline.from_pipe(pipe, dtype=dtype),
        "inpaint": FluxInpaintPipeline.from_pipe(pipe, dtype=dtype),
    }
    for p in stock_pipes.values():
        p.set_progress_bar_config(disable=True)
    rec.data["memory"]["stock_three_pipelines_gib"] = _gib(device)

    source_png = _png(source)
    sha = hashlib.sha256(source_png).hexdigest()

    def edit(op: Operation, **fields: Any) -> ImageEdit:
        return ImageEdit(op, source_sha256=sha, source=source_png, parent="bench", **fields)

    zoom_box = zoom_layout(side, side, 2.0).source
    pan = pan_layout(side, side, PanDirection.LEFT, 2048, 2048, 2.0)
    # A prompt of its own for every op and call: a prompt seen before would come from the
    # runner's embedding cache, and stock encodes every call.
    requests: dict[str, Callable[[int], GenerationRequest]] = {
        "text": lambda i: GenerationRequest(f"{prompt} {i}", i, width=side, height=side),
        "vary_0.35": lambda i: GenerationRequest(
            f"{prompt} (vary) {i}",
            i,
            width=side,
            height=side,
            edit=edit(Operation.VARY, strength=0.35),
        ),
        "vary_0.7": lambda i: GenerationRequest(
            f"{prompt} (strong vary) {i}",
            i,
            width=side,
            height=side,
            edit=edit(Operation.VARY, strength=0.7),
        ),
        "remix": lambda i: GenerationRequest(
            f"an oil painting of {prompt} {i}",
            i,
            width=side,
            height=side,
            edit=edit(Operation.REMIX, strength=0.6),
        ),
        "upscale_2048": lambda i: GenerationRequest(
            f"{prompt} (upscaled) {i}",
            i,
            width=big,
            height=big,
            edit=edit(Operation.UPSCALE, strength=0.3, tile=1152),
        ),
        "zoom_2": lambda i: GenerationRequest(
            f"{prompt} (zoomed out) {i}",
            i,
            width=side,
            height=side,
            edit=edit(
                Operation.ZOOM,
                zoom=2.0,
                box=(zoom_box.x, zoom_box.y, zoom_box.width, zoom_box.height),
            ),
        ),
        "pan_left": lambda i: GenerationRequest(
            f"{prompt} (panned) {i}",
            i,
            width=pan.canvas[0],
            height=pan.canvas[1],
            edit=edit(
                Operation.PAN,
                pan=PanDirection.LEFT,
                box=(pan.source.x, pan.source.y, pan.source.width, pan.source.height),
            ),
        ),
    }

    def stock_call(op: str, i: int) -> Any:
        request = requests[op](i)
        gen = torch.Generator("cpu").manual_seed(i)
        size = {"width": request.width, "height": request.height}
        if op.startswith(("vary", "remix")):
            strength = request.edit.strength  # type: ignore[union-attr]
            return stock_pipes["img2img"](
                prompt=request.prompt,
                image=source,
                strength=strength,
                generator=gen,
                **size,
                **common,
            ).images
        if op == "upscale_2048":
            # diffusers resizes the source to width x height itself (Lanczos), timed as ours is.
            return stock_pipes["img2img"](
                prompt=request.prompt,
                image=source,
                strength=0.3,
                generator=gen,
                **size,
                **common,
            ).images
        canvas, mask = outpaint_inputs(request)
        return stock_pipes["inpaint"](
            prompt=request.prompt,
            image=canvas,
            mask_image=mask,
            strength=1.0,
            generator=gen,
            **size,
            **common,
        ).images

    for op in OPS[1:]:
        stats, _ = _measure(device, lambda i, op=op: stock_call(op, i), repeats)
        if kernel_profiles:
            stats["profile"] = _short(kernel_breakdown(lambda op=op: stock_call(op, 99)))
        rec.put("stock", op, stats)
        log(f"stock {op} {stats['s']:.3f} s, peak {stats['peak_gib']:.1f} GiB")
    stock_pipes.clear()
    torch.cuda.empty_cache()

    # -- fluxbot ------------------------------------------------------------------------------
    apply_bot_switches(device)
    features = DeviceFeatures.probe(device)
    runner: FluxRunner | None = None
    report: Any = None
    for n, profile in enumerate(profiles):
        if time.perf_counter() - t0 > deadline_s:
            rec.data["notes"].append(f"{profile}: not run (time budget)")
            rec.flush()
            log(f"skipping {profile}: past the deadline")
            continue
        if n:
            # A fresh model per profile: fp8 weights and compiled graphs stay with the last one.
            # Everything that holds the last model: its runner, its compiled paths (report).
            pipe = runner = report = None
            gc.collect()
            torch._dynamo.reset()
            torch.cuda.empty_cache()
            pipe = build_pipeline(arch, device)
            pipe.to(device)
        runner = FluxRunner(pipe, device, model_name="bench", dtype=dtype, placed=True)
        plan = plan_speed(SpeedProfile(profile), features)
        report = apply_speed_profile(pipe, plan, cache_dir=Path("/tmp/fluxbench-cache"))
        sync(device)
        torch.cuda.empty_cache()
        if report.paths is not None:
            runner.attach_compiled(report.paths)
        log(f"{profile}: applied ({report.compiled}, fp8={bool(report.fp8)})")
        before_pipes = _gib(device)
        for op in OPS:
            if time.perf_counter() - t0 > deadline_s:
                rec.data["notes"].append(f"{profile} {op}: not run (time budget)")
                rec.flush()
                continue
            stats, results = _measure(
                device,
                lambda i, op=op, runner=runner: runner.generate([requests[op](i)]),
                repeats,
                runner.compiled,
            )
            stats["size"] = list(results[0].images[0].size)
            stats["path"] = results[0].path
            timings = results[0].timings
            stats["stages_s"] = {
                "text_encode": timings.text_encode,
                "denoise": timings.denoise,
                "decode": timings.decode,
            }
            if kernel_profiles:
                stats["profile"] = _short(
                    kernel_breakdown(
                        lambda op=op, runner=runner: runner.generate([requests[op](99)])
                    )
                )
            if op == "upscale_2048":
                stats["tiles"] = len(tile_grid(big, big, 1152))
            rec.put(profile, op, stats)
            log(
                f"{profile} {op} {stats['s']:.3f} s (first {stats['first_s']:.1f} s), "
                f"peak {stats['peak_gib']:.1f} GiB"
            )
        rec.data["memory"][f"{profile}_resident_before_image_pipes_gib"] = before_pipes
        rec.data["memory"][f"{profile}_resident_after_image_pipes_gib"] = _gib(device)
        rec.data["memory"][f"{profile}_shares_weights"] = runner.image_ops.shares_weights()
        rec.flush()
    write_markdown(rec.data, path.with_suffix(".md"))
    log(f"wrote {path}")
    return path


def write_markdown(data: dict[str, Any], path: Path) -> None:
    runs = data["runs"]
    stock = runs.get("stock", {})
    lines = [
        f"# Image operations: {data['meta'].get('device')} (torch {data['meta'].get('torch')}, "
        f"diffusers {data['meta'].get('diffusers')})",
        "",
        "Seconds per image (median after a warm-up call) and peak VRAM (GiB); × = stock / run.",
        "",
        "| op | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for op in OPS:
        cells = []
        for name, results in runs.items():
            stats = results.get(op)
            if not stats or stats.get("s") is None:
                cells.append("not run")
                continue
            ratio = ""
            base = stock.get(op, {}).get("s")
            if name != "stock" and base:
                ratio = f" ({base / stats['s']:.2f}×)"
            cells.append(f"{stats['s']:.3f}{ratio}, {stats['peak_gib']:.1f} GiB")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines += ["", "Memory: " + json.dumps(data["memory"]), ""]
    lines += _profile_lines(runs)
    lines += [f"- {note}" for note in data["notes"]]
    path.write_text("\n".join(lines) + "\n")
