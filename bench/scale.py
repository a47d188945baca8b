"""Several devices, one queue: throughput of the real scheduler with one worker, then with all.

Issue #7's measurement: a queue of jobs through `Scheduler` + `LocalWorker`s built by
fluxbot's own loading code, first on the first device alone, then on every device; reports
images/s for each, the speed-up, and how busy each device was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluxbot.images import encode_result
from fluxbot.jobs import Job
from fluxbot.pipeline import FluxRunner
from fluxbot.requests import GenerationRequest
from fluxbot.scheduler import Scheduler
from fluxbot.worker import LocalWorker


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
    busy = {
        w.device: (w.status().mean_s_per_image or 0.0) * w.status().images_done / wall
        for w in workers
    }
    await scheduler.shutdown()
    return {
        "devices": list(devices),
        "jobs": len(requests),
        "failed": failed,
        "wall_s": wall,
        "images_per_s": len(requests) / wall,
        "jobs_per_device": per_device,
        "busy_fraction": busy,
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
    return "\n".join(
        [
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
    )
