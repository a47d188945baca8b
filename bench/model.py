"""The benchmark's model: FLUX.1-schnell's exact architecture with random weights, saved once.

fluxbot.engine.model_builder builds it (`FULL` sizes) on the GPU in bf16 in seconds (no download,
no 90 GB fp32 init on the CPU); the compute is the real checkpoint's because the shapes are.
Its 2-D weights are scaled so activations stay finite (timings do not depend on the values).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

MARKER = "fluxbench.json"


def build_pipeline(arch: str, device: str) -> Any:
    """`full`: FLUX.1-schnell's shapes in bf16 on `device`; `tiny`: fluxbot's tiny-random."""
    from fluxbot.engine.model_builder import FULL, build_tiny_pipeline
    from fluxbot.engine.model_builder import build_pipeline as build_flux

    if arch == "tiny":
        return build_tiny_pipeline(torch.float32)
    if arch != "full":
        raise ValueError(f"unknown arch {arch!r}: full or tiny")
    # Built on the device in bf16: seconds, where an fp32 init on the CPU would need 90 GB.
    return build_flux(FULL, device=device, dtype=torch.bfloat16)


def ensure_saved(arch: str, model_dir: Path, device: str, log: Any = print) -> dict[str, float]:
    """Build and `save_pretrained` the model once (tokenizers included); reuse it if present."""
    from fluxbot.engine.model_builder import FULL, TINY

    marker = model_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("arch") == arch:
        log(f"model already saved in {model_dir}")
        return {}
    started = time.perf_counter()
    pipe = build_pipeline(arch, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    built = time.perf_counter() - started
    log(f"built {arch} model in {built:.1f} s; saving to {model_dir}")
    model_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(model_dir)
    saved = time.perf_counter() - started - built
    weight_scale = FULL.weight_scale if arch == "full" else TINY.weight_scale
    marker.write_text(json.dumps({"arch": arch, "weight_scale": weight_scale}))
    log(f"saved in {saved:.1f} s")
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"build_s": built, "save_s": saved}
