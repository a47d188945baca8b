"""Benchmark results: one JSON file and a Markdown rendering of it, named by date and card."""

from __future__ import annotations

import json
import math
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch

# ~69.5 TFLOP per step at 1024x1024 (L = 4096 + 256), 4 steps, at the ~790 TFLOP/s a bf16
# matmul reaches on an H100/H200: the arithmetic floor per image (GPU_NOTES.md).
FLOOR_TFLOP_PER_IMAGE_1024 = 4 * 69.5
BF16_TFLOPS = 790.0
FLOOR_S_1024 = FLOOR_TFLOP_PER_IMAGE_1024 / BF16_TFLOPS


def card_name(device: str) -> str:
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return platform.processor() or "cpu"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def environment(device: str) -> dict[str, Any]:
    import diffusers
    import transformers

    env: dict[str, Any] = {
        "card": card_name(device),
        "device": device,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        env["gpu_memory_gib"] = props.total_memory / 2**30
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def result_paths(out_dir: Path, device: str, tag: str) -> tuple[Path, Path]:
    stem = f"{time.strftime('%Y-%m-%d', time.gmtime())}-{slug(card_name(device))}"
    if tag:
        stem += f"-{slug(tag)}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def write(results: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    md_path.write_text(render_markdown(results))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _case(entry: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if not entry:
        return None
    return (entry.get("cases") or {}).get(key)


def render_markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    lines = [
        f"# fluxbot benchmark: {env.get('card', '?')}",
        "",
        f"{env.get('date_utc', '')}; torch {env.get('torch')}, diffusers {env.get('diffusers')}, "
        f"transformers {env.get('transformers')}. FLUX.1-schnell architecture with random "
        "weights (bf16), 4 steps, guidance 0, max_sequence_length 256. Medians of "
        f"{results.get('repeats', '?')} timed runs after a warm-up run, distinct prompt per run "
        "(embedding cache misses). Seconds per image include text encoding, denoising, VAE "
        "decode and conversion to PIL; PNG encoding and writing are listed apart (stock: on the "
        "calling thread; fluxbot: on the worker's encode threads).",
        "",
    ]
    stock = results.get("stock")
    profiles = results.get("profiles", {})
    rows = [("stock diffusers", stock)] + [(f"fluxbot {k}", v) for k, v in profiles.items()]
    base = _case(stock, "1024x1")
    base_s = base["s_per_image"] if base else None
    lines += [
        "| run | 1024² ×1 s/img | × stock | % of floor | 1024² ×4 s/img | 512² ×4 s/img "
        "| queue img/s | GPU idle between jobs, mean ms | peak VRAM GiB (1024² ×1) "
        "| load s | warm-up s | start → first image s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in rows:
        if not entry:
            continue
        c1 = _case(entry, "1024x1")
        c4 = _case(entry, "1024x4")
        c5 = _case(entry, "512x4")
        s1 = c1["s_per_image"] if c1 else None
        speedup = base_s / s1 if (base_s and s1) else None
        floor = FLOOR_S_1024 / s1 * 100 if s1 else None
        queue = entry.get("queue") or {}
        idle = (queue.get("gpu_idle_between_jobs_ms") or {}).get("mean")
        timings = entry.get("timings") or {}
        load = timings.get("load_s", entry.get("load_s"))
        first = timings.get("first_image_s", entry.get("start_to_first_image_s"))
        lines.append(
            f"| {name} | {_f(s1)} | {_f(speedup, 2)} | {_f(floor, 0)} | "
            f"{_f(c4 and c4['s_per_image'])} | {_f(c5 and c5['s_per_image'])} | "
            f"{_f(queue.get('images_per_s'), 2)} | {_f(idle, 1)} | "
            f"{_f(c1 and c1.get('peak_vram_gib'), 1)} | {_f(load, 1)} | "
            f"{_f(timings.get('warmup_s'), 1)} | {_f(first, 1)} |"
        )
    lines += [
        "",
        f"Floor: {FLOOR_TFLOP_PER_IMAGE_1024:.0f} TFLOP per 1024² image at {BF16_TFLOPS:.0f} "
        f"TFLOP/s (bf16 matmul) = {FLOOR_S_1024:.3f} s; '% of floor' = floor / measured.",
        "",
        "## Stages at 1024² ×1 (s per image, medians)",
        "",
        "| run | text encode | denoise | VAE decode + PIL | PNG encode + write |",
        "|---|---|---|---|---|",
    ]
    for name, entry in rows:
        c1 = _case(entry, "1024x1")
        if not c1:
            continue
        st = c1.get("stages_s_per_image", {})
        lines.append(
            f"| {name} | {_f(st.get('text_encode'))} | {_f(st.get('denoise'))} | "
            f"{_f(st.get('decode'))} | {_f(st.get('image_encode'))} |"
        )
    lines += _queue_section(rows)
    lines += _restart_section(results.get("restart"))
    lines += _memory_section(results.get("memory"))
    lines += _diff_section(results.get("output_diff"))
    lines += _micro_section(results.get("micro"))
    notes = results.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _queue_section(rows: list[tuple[str, Any]]) -> list[str]:
    out = [
        "",
        "## Queue of mixed jobs (aspect presets, counts 1/2/4, every fourth a reroll)",
        "",
        "| run | jobs | images | wall s | img/s | idle mean / max ms | encode on GPU thread |",
        "|---|---|---|---|---|---|---|",
    ]
    any_row = False
    for name, entry in rows:
        q = (entry or {}).get("queue")
        if not q:
            continue
        any_row = True
        idle = q.get("gpu_idle_between_jobs_ms") or {}
        on_gpu = q.get("encode_on_device_thread")
        out.append(
            f"| {name} | {q['jobs']} | {q['images']} | {_f(q['wall_s'], 1)} | "
            f"{_f(q['images_per_s'], 2)} | {_f(idle.get('mean'), 1)} / {_f(idle.get('max'), 1)} | "
            f"{'yes (plain script)' if on_gpu is None else 'yes' if on_gpu else 'no'} |"
        )
    return out if any_row else []


def _restart_section(restart: dict[str, Any] | None) -> list[str]:
    if not restart:
        return []
    out = [
        "",
        "## Start to first image (fresh process; weights on local disk)",
        "",
        "| profile | compile cache | load s | warm-up s (all presets) | ready s | first image s |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in restart.items():
        if "error" in r:
            out.append(f"| {key} | – | – | – | – | failed: {r['error']} |")
            continue
        t = r.get("timings", {})
        out.append(
            f"| {r.get('profile')} | {r.get('cache')} | {_f(t.get('load_s'), 1)} | "
            f"{_f(t.get('warmup_s'), 1)} | {_f(r.get('ready_s_since_start'), 1)} | "
            f"{_f(r.get('first_user_image_s_since_start'), 1)} |"
        )
    return out


def _memory_section(memory: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    out = [
        "",
        "## Memory profiles (1024² ×1, speed profile eager)",
        "",
        "| profile | s/image | peak VRAM GiB (allocated) | peak reserved GiB | cap GiB | load s |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in memory.items():
        if "error" in m:
            out.append(f"| {key} | failed: {m['error']} | | | | |")
            continue
        out.append(
            f"| {key} | {_f(m.get('s_per_image'))} | {_f(m.get('peak_vram_gib'), 2)} | "
            f"{_f(m.get('peak_reserved_gib'), 2)} | {_f(m.get('cap_gib'), 0)} | "
            f"{_f((m.get('timings') or {}).get('load_s'), 1)} |"
        )
    return out


def _diff_section(diff: dict[str, Any] | None) -> list[str]:
    if not diff:
        return []
    out = [
        "",
        "## Output difference, same prompt and seed (1024² ×1, 8-bit RGB)",
        "",
        "| pair | mean abs diff (0-255) | PSNR dB |",
        "|---|---|---|",
    ]
    for key, d in diff.items():
        out.append(f"| {key} | {_f(d['mean_abs_diff'], 2)} | {_f(d['psnr_db'], 1)} |")
    return out


def _micro_section(micro: dict[str, Any] | None) -> list[str]:
    if not micro:
        return []
    out = ["", "## Levers in isolation", "", "SDPA backends (ms per call, TFLOP/s):", ""]
    out += ["| shape | " + " | ".join(["default", "flash", "cudnn", "efficient"]) + " |"]
    out += ["|---|---|---|---|---|"]
    for shape, row in micro.get("attention_ms", {}).items():
        cells = []
        for name in ("default", "flash", "cudnn", "efficient"):
            r = row.get(name, {})
            cells.append("n/a" if "ms" not in r else f"{r['ms']:.2f} ({r['tflops']:.0f})")
        out.append(f"| {shape} | " + " | ".join(cells) + " |")
    out += ["", "Linears (ms per call):", ""]
    out += ["| shape | bf16 | fp8 eager | fp8 compiled | fp8 rel. error |", "|---|---|---|---|---|"]
    for shape, e in micro.get("linear_ms", {}).items():
        out.append(
            f"| {shape} | {e['bf16_ms']:.3f} ({e['bf16_tflops']:.0f} TFLOP/s) | "
            f"{e['fp8_eager_ms']:.3f} | {e['fp8_compiled_ms']:.3f} "
            f"({e['fp8_compiled_tflops']:.0f} TFLOP/s) | {e['fp8_rel_error']:.4f} |"
        )
    return out
