"""Styles on the GPU: LoRA switch time, seconds per image with and without a LoRA, recompiles.

`python -m bench.styles --out DIR [--profiles eager,fast]` builds FLUX.1-schnell's architecture
with random weights on the GPU (bench.model), writes random LoRAs of rank 16 and 64 over every
linear layer a FLUX LoRA trainer targets, then per speed profile:
- eager: the LoRAs as named diffusers adapters (`set_adapters` per batch);
- compile / fast: one slot built before fp8 conversion and compilation, hot-swapped per batch;
  30 jobs alternating 3 styles (and none), counting graphs Dynamo compiles (target: none new).
Figures: s/image at 1024² without and with a LoRA, switch time, VRAM per loaded LoRA.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bench.measure import sync
from bench.model import build_pipeline
from fluxbot.core.requests import GenerationRequest

DOUBLE = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)
SINGLE = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_random_lora(transformer: Any, path: Path, rank: int, seed: int) -> int:
    """A LoRA of `rank` over every block linear of the (unfused) transformer; returns bytes."""
    from safetensors.torch import save_file

    modules = dict(transformer.named_modules())
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    config = transformer.config
    names = [f"transformer_blocks.{i}.{m}" for i in range(config.num_layers) for m in DOUBLE]
    names += [
        f"single_transformer_blocks.{i}.{m}"
        for i in range(config.num_single_layers)
        for m in SINGLE
    ]
    for name in names:
        layer = modules[name]
        down = torch.randn(rank, layer.in_features, generator=generator) / layer.in_features**0.5
        up = torch.randn(layer.out_features, rank, generator=generator) * 0.01
        state[f"transformer.{name}.lora_A.weight"] = down.to(torch.bfloat16)
        state[f"transformer.{name}.lora_B.weight"] = up.to(torch.bfloat16)
    save_file(state, str(path))
    return sum(t.numel() * t.element_size() for t in state.values())


def _allocated(device: str) -> int:
    return torch.cuda.memory_allocated(device) if device.startswith("cuda") else 0


def _time_images(runner: Any, lora: Any, n: int, tag: str, size: int) -> list[float]:
    seconds = []
    for i in range(n):
        request = GenerationRequest(
            prompt=f"bench {tag} {i}", seed=i, width=size, height=size, lora=lora
        )
        sync(runner.device)
        started = time.perf_counter()
        runner.generate([request])
        sync(runner.device)
        seconds.append(time.perf_counter() - started)
    return seconds


def _time_switch(runner: Any, specs: Sequence[Any], rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        for spec in specs:
            sync(runner.device)
            started = time.perf_counter()
            runner.loras.activate(spec)
            sync(runner.device)
            seconds.append(time.perf_counter() - started)
    return seconds


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_profile(
    pipe: Any,
    profile: str,
    specs: list[Any],
    cache_dir: Path,
    device: str,
    size: int,
    force_slot: bool = False,
    result: dict[str, Any] | None = None,
    save: Callable[[], object] = lambda: None,
) -> dict[str, Any]:
    """One speed profile on the already built pipeline (its LoRA layers removed afterwards).
    Figures go into `result` as they are measured, `save` after each: a run cut short keeps
    what it measured."""
    from fluxbot.config import MemoryProfile, SpeedProfile
    from fluxbot.engine.lora import LoraAdapters
    from fluxbot.engine.pipeline import FluxRunner
    from fluxbot.engine.speed import (
        DeviceFeatures,
        apply_speed_profile,
        fuse_qkv_,
        plan_speed,
        warm_shapes,
    )

    features = DeviceFeatures.probe(device)
    plan = plan_speed(SpeedProfile(profile), features, memory=MemoryProfile.FULL)
    slot = plan.compile or force_slot
    result = {} if result is None else result
    result.update(profile=profile, runs_as=str(plan.profile))
    adapters = LoraAdapters(pipe, capacity=4)
    allocated = _allocated(device)
    if slot:
        fuse_qkv_(pipe.transformer)
        started = time.perf_counter()
        adapters.install_slot(specs)
        result["slot_install_s"] = time.perf_counter() - started
        result["slot_vram_mib"] = (_allocated(device) - allocated) / 2**20
    report = apply_speed_profile(pipe, plan, cache_dir=cache_dir)
    runner = FluxRunner(pipe, device, model_name="bench-random", placed=True)
    runner.loras = adapters
    if report.paths is not None:
        # Compiled graphs are built on request (the bot does it in the background): this size
        # now, so the first image and the jobs below run compiled.
        runner.attach_compiled(report.paths)
        report.paths.build_now(warm_shapes([(size, size)], counts=(1,)))
    started = time.perf_counter()
    runner.generate([GenerationRequest(prompt="warm", seed=0, width=size, height=size)])
    result["first_image_s"] = time.perf_counter() - started
    _log(f"{profile}: first image (compile if any) {result['first_image_s']:.1f} s")
    save()
    plain = _time_images(runner, None, 2, "plain", size)
    result["no_lora_s_per_image"] = statistics.median(plain)
    before = _allocated(device)
    vram = {}
    for spec in specs:
        start_mem = _allocated(device)
        started = time.perf_counter()
        runner.loras.activate(spec)
        sync(device)
        vram[spec.source] = {
            "first_load_s": time.perf_counter() - started,
            "vram_mib": (_allocated(device) - start_mem) / 2**20,
        }
    result["per_lora"] = vram
    result["loaded_vram_mib"] = (_allocated(device) - before) / 2**20
    graphs_before = _graphs()
    _log(f"{profile}: loaded {json.dumps(vram)}")
    for spec in specs[:2]:  # rank 16 and rank 64
        seconds = _time_images(runner, spec, 2, f"lora{spec.source[-12:]}", size)
        result.setdefault("lora_s_per_image", {})[spec.source] = statistics.median(seconds)
    _log(f"{profile}: plain {result['no_lora_s_per_image']:.3f} s, {result['lora_s_per_image']}")
    save()
    switches = _time_switch(runner, [*specs, None], rounds=3)
    result["switch_ms_median"] = statistics.median(switches) * 1000
    result["switch_ms_max"] = max(switches) * 1000
    median_ms, max_ms = result["switch_ms_median"], result["switch_ms_max"]
    _log(f"{profile}: switch median {median_ms:.1f} ms, max {max_ms:.1f}")
    save()
    if slot:
        cycle = [specs[0], specs[1], specs[2]]
        started = time.perf_counter()
        for i in range(30):
            _time_images(runner, cycle[i % 3], 1, f"alt{i}", size)
            if i % 5 == 4:  # partial figures, in case the run is cut short
                result["alternating_jobs_done"] = i + 1
                result["graphs_compiled_so_far"] = _graphs() - graphs_before
                save()
        result["alternating_30_jobs_s"] = time.perf_counter() - started
        result["graphs_compiled_while_alternating"] = _graphs() - graphs_before
        new_graphs = result["graphs_compiled_while_alternating"]
        _log(f"{profile}: new graphs while alternating 3 styles over 30 jobs: {new_graphs}")
    report = runner.loras.report()
    _log(f"{profile}: {report.describe()}; loaded {report.loaded}; slot {report.slot_bytes}")
    result["report"] = {
        "mode": report.mode,
        "loaded": report.loaded,
        "slot_bytes": report.slot_bytes,
        "loads": report.loads,
        "switches": report.switches,
        "describe": report.describe(),
    }
    return result


def prepare_pipeline(pipe: Any, device: str) -> None:
    """The bot's torch switches and its full memory profile (which fuses q/k/v: the LoRA files
    are written before, in FLUX's unfused names, as trainers write them)."""
    from bench.runs import apply_bot_switches
    from fluxbot.config import MemoryProfile
    from fluxbot.engine.memory_profiles import apply_memory_profile, plan_memory

    apply_bot_switches(device)
    apply_memory_profile(pipe, plan_memory(MemoryProfile.FULL, device), device)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.styles")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profiles", default="eager,fast")
    parser.add_argument("--lora-dir", type=Path, default=Path("/tmp/bench-loras"))
    parser.add_argument("--arch", default="full", help="full (FLUX.1 shapes) or tiny (a smoke run)")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/bench-styles-cache"))
    parser.add_argument("--slot", action="store_true", help="the slot even where eager (tests)")
    args = parser.parse_args(argv)
    size = 1024 if args.arch == "full" else 256
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "card": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "arch": args.arch,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "profiles": [],
    }
    save = lambda: (args.out / "styles.json").write_text(json.dumps(results, indent=1))  # noqa: E731
    from diffusers import __version__ as diffusers_version
    from peft import __version__ as peft_version

    from fluxbot.core.styles import LoraSpec

    results.update(diffusers=diffusers_version, peft=peft_version)
    started = time.perf_counter()
    pipe = build_pipeline(args.arch, args.device)  # in memory: seconds, as `bench images`
    _log(f"random-weight model ready in {time.perf_counter() - started:.1f} s")
    args.lora_dir.mkdir(parents=True, exist_ok=True)
    specs = []
    for rank, seed in ((16, 1), (64, 2), (16, 3)):
        path = args.lora_dir / f"r{rank}-{seed}.safetensors"
        nbytes = write_random_lora(pipe.transformer, path, rank, seed)
        specs.append(LoraSpec(str(path), 0.8))
        results.setdefault("lora_files_mib", {})[path.name] = nbytes / 2**20
    _log(f"LoRA files: {results['lora_files_mib']}")
    prepare_pipeline(pipe, args.device)
    save()
    for profile in args.profiles.split(","):
        entry: dict[str, Any] = {"profile": profile}
        results["profiles"].append(entry)
        try:
            run_profile(
                pipe, profile, specs, args.cache_dir, args.device, size, args.slot, entry, save
            )
        except Exception as exc:  # a record of what failed is the benchmark's result too
            traceback.print_exc()
            entry["error"] = f"{type(exc).__name__}: {exc}"
            _log(f"{profile} failed: {type(exc).__name__}: {exc}")
        save()
        if profile == "eager" and not args.slot:
            pipe.unload_lora_weights()  # the next profile starts from plain layers
        else:
            break  # compiled and fp8 changes cannot be undone: the last profile of a run
    _log(json.dumps(results["profiles"], indent=1)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
