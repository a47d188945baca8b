"""Several devices, one queue: throughput of the real scheduler with one worker, then with all.

Issue #7's measurement: a queue of jobs through `Scheduler` + `LocalWorker`s built by
fluxbot's own loading code, first on the first device alone, then on every device; reports
images/s for each, the speed-up, and how busy each device was.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.measure import median, peak_gib, reset_peak, sync
from fluxbot.config import MemoryProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.devices.discovery import discover_devices
from fluxbot.engine.encoding import encode_result
from fluxbot.engine.pipeline import FluxRunner
from fluxbot.engine.placement import plan_placement
from fluxbot.serving.job import Job
from fluxbot.serving.scheduler import Scheduler
from fluxbot.serving.workers.local import LocalWorker


def scale_requests(jobs: int, size: int) -> list[GenerationRequest]:
    """`jobs` one-image requests of `size`², distinct prompts and seeds, from 8 users."""
    return [
        GenerationRequest(prompt=f"scale test {i}", seed=i, width=size, height=size)
        for i in range(jobs)
    ]


async def _queue_run(
    model_dir: Path, devices: Sequence[str], requests: Sequence[GenerationRequest], users: int
) -> dict[str, Any]:
    workers = [
        LocalWorker(
            device,
            lambda device=device: FluxRunner.load(str(model_dir), device),
            encode=lambda result: encode_result(result, str(model_dir)),
            timeout_s=3600.0,
        )
        for device in devices
    ]
    scheduler = Scheduler(workers, user_queue_cap=10_000, global_queue_cap=100_000)
    await scheduler.start()
    if not all(await asyncio.gather(*(w.wait_ready() for w in workers))):
        raise RuntimeError(f"a worker on {', '.join(devices)} failed to load")
    warm = [Job(f"warm-{i}", 0, requests[0].with_seed(10**6 + i)) for i in range(len(devices))]
    await asyncio.gather(*(scheduler.submit(job).result() for job in warm))
    before = {w.device: _device_seconds(w) for w in workers}
    started = time.perf_counter()
    handles = [
        scheduler.submit(Job(f"job-{i}", i % users, request)) for i, request in enumerate(requests)
    ]
    outcomes = await asyncio.gather(*(h.result() for h in handles))
    wall = time.perf_counter() - started
    failed = [o.error for o in outcomes if not o.ok]
    per_device: dict[str, int] = {}
    for outcome in outcomes:
        per_device[outcome.device] = per_device.get(outcome.device, 0) + 1
    busy = {w.device: (_device_seconds(w) - before[w.device]) / wall for w in workers}
    await scheduler.shutdown()
    del workers, scheduler
    release(devices)
    return {
        "devices": list(devices),
        "jobs": len(requests),
        "failed": failed,
        "wall_s": wall,
        "images_per_s": len(requests) / wall,
        "jobs_per_device": per_device,
        "busy_fraction": busy,
    }


def _device_seconds(worker: LocalWorker) -> float:
    """Seconds the worker's device has spent on batches that made images."""
    status = worker.status()
    return (status.mean_s_per_image or 0.0) * status.images_done


def release(devices: Sequence[str]) -> None:
    """Free what closed workers held, so the next run starts with empty cards."""
    gc.collect()
    for device in devices:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()


def _time_images(runner: FluxRunner, request: GenerationRequest, repeats: int) -> list[float]:
    runner.generate([request.with_seed(request.seed + 1000)])  # warm-up (allocations, kernels)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        runner.generate([request.with_seed(request.seed + 1 + i)])
        times.append(time.perf_counter() - started)
    return times


def run_split(
    model_dir: Path, devices: Sequence[str], cap_gib: float, size: int, repeats: int = 3
) -> dict[str, Any]:
    """Split placement on real cards: the `full` profile planned for cards capped at
    `cap_gib` each (too small for the model, enough for a pair), the cap enforced by the
    allocator; the same seed is also made on one uncapped card, and the pixels compared."""
    import numpy as np

    first, second = devices[0], devices[1]
    request = GenerationRequest(prompt="split placement check", seed=7, width=size, height=size)

    alone = FluxRunner.load(str(model_dir), first)
    reference = np.asarray(alone.generate([request])[0].images[0]).astype(np.float64)
    alone_s = _time_images(alone, request, repeats)
    del alone
    release(devices)

    cap = int(cap_gib * 2**30)
    infos = {d.torch_device: d for d in discover_devices()}
    plan = plan_placement(
        MemoryProfile.FULL, [(infos[first], cap), (infos[second], cap)], ram_available=0
    )
    replica = plan.replicas[0]
    if not replica.is_split:
        raise RuntimeError(f"expected a split replica at {cap_gib} GiB per card: {replica}")
    for device in (first, second):
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cap / total, device)
        reset_peak(device)
    try:
        components = {str(k): v for k, v in replica.devices.items()}
        started = time.perf_counter()
        runner = FluxRunner.load(str(model_dir), replica.primary, component_devices=components)
        load_s = time.perf_counter() - started
        image = np.asarray(runner.generate([request])[0].images[0]).astype(np.float64)
        split_s = _time_images(runner, request, repeats)
        for device in (first, second):
            sync(device)
        peaks = {device: peak_gib(device) for device in (first, second)}
        del runner
    finally:
        release(devices)
        for device in (first, second):
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    diff = float(np.abs(image - reference).mean())
    return {
        "cap_gib_per_card": cap_gib,
        "reason": replica.reason,
        "components": components,
        "load_s": load_s,
        "split_s_per_image": median(split_s),
        "one_card_s_per_image": median(alone_s),
        "peak_gib": peaks,
        "mean_abs_diff_vs_one_card": diff,
    }


def run_scale(
    model_dir: Path, devices: Sequence[str], jobs: int, size: int, users: int = 8
) -> dict[str, Any]:
    """One device alone, then all of them, on the same queue of jobs."""
    requests = scale_requests(jobs, size)
    one = asyncio.run(_queue_run(model_dir, devices[:1], requests, users))
    every = asyncio.run(_queue_run(model_dir, devices, requests, users))
    return {
        "size": size,
        "one_device": one,
        "all_devices": every,
        "speedup": every["images_per_s"] / one["images_per_s"],
    }


def render_scale(result: dict[str, Any], card: str) -> str:
    one, every = result["one_device"], result["all_devices"]
    busy = ", ".join(f"{d} {f:.0%}" for d, f in every["busy_fraction"].items())
    lines = [
        f"# fluxbot scaling: {card}",
        "",
        f"{every['jobs']} jobs of {result['size']}² through the real scheduler.",
        "",
        "| devices | img/s | wall s | jobs per device |",
        "|---|---|---|---|",
        f"| {', '.join(one['devices'])} | {one['images_per_s']:.2f} | {one['wall_s']:.1f} | "
        f"{one['jobs_per_device']} |",
        f"| {', '.join(every['devices'])} | {every['images_per_s']:.2f} | "
        f"{every['wall_s']:.1f} | {every['jobs_per_device']} |",
        "",
        f"Speed-up: {result['speedup']:.2f}x; busy: {busy}.",
        "",
    ]
    if result.get("split"):
        lines += render_split(result["split"])
    return "\n".join(lines)


def render_split(split: dict[str, Any]) -> list[str]:
    peaks = ", ".join(f"{d} {g:.1f} GiB" for d, g in split["peak_gib"].items())
    return [
        f"## Split placement (each card capped at {split['cap_gib_per_card']:g} GiB)",
        "",
        f"{split['reason']}.",
        "",
        "| placement | s/image (1024², median of 3) | peak VRAM allocated |",
        "|---|---|---|",
        f"| one card, uncapped | {split['one_card_s_per_image']:.3f} | – |",
        f"| split over two capped cards | {split['split_s_per_image']:.3f} | {peaks} |",
        "",
        f"Same seed, split vs one card: mean abs diff {split['mean_abs_diff_vs_one_card']:.2f}"
        f" / 255 (8-bit RGB); split load {split['load_s']:.1f} s.",
        "",
    ]
