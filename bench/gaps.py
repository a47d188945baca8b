"""Where the device's idle time between two jobs goes, on the device thread's own clock.

`python -m bench gaps` runs a queue of jobs through the real Scheduler and LocalWorker (PNG
encoding on the encode threads, as in the bot) and marks, on the device thread: the end of a
job's VAE decode (synchronised, so it is when the device finished), the PIL conversion, the end
of `generate`, the cleanup check, the next `generate` and its first device work. Each segment's
median says what to shorten. A second pass runs with a shorter interpreter switch interval, to
show how much of the gap is the device thread waiting for the GIL.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

SEGMENTS = (
    ("decode_end", "pil_end"),
    ("pil_end", "generate_end"),
    ("generate_end", "next_generate"),
    ("next_generate", "next_first_work"),
)


class Timeline:
    """Marks on the device thread; `first_work` is the first encoder or transformer call."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, float]] = []

    def mark(self, name: str) -> None:
        if threading.current_thread().name.startswith("device-") and self.jobs:
            self.jobs[-1].setdefault(name, time.perf_counter())

    def start_job(self) -> None:
        self.jobs.append({"generate": time.perf_counter()})

    def segments_ms(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for before, after in zip(self.jobs, self.jobs[1:], strict=False):
            points = {
                "decode_end": before.get("decode_end"),
                "pil_end": before.get("pil_end"),
                "generate_end": before.get("generate_end"),
                "next_generate": after.get("generate"),
                "next_first_work": after.get("first_work"),
            }
            for start, end in SEGMENTS:
                if points[start] is not None and points[end] is not None:
                    out.setdefault(f"{start} -> {end}", []).append(
                        1000 * (points[end] - points[start])
                    )
            if points["decode_end"] is not None and points["next_first_work"] is not None:
                total = 1000 * (points["next_first_work"] - points["decode_end"])
                out.setdefault("idle total", []).append(total)
        return {key: statistics.median(values) for key, values in out.items()}


def _instrument(runner: Any, timeline: Timeline) -> None:
    import fluxbot.engine.pipeline as pipeline_module
    from bench.measure import sync

    pipe = runner.pipe
    decode = pipe.vae.decode

    def timed_decode(*args: Any, **kwargs: Any) -> Any:
        out = decode(*args, **kwargs)
        sync(runner.device)
        timeline.mark("decode_end")
        return out

    pipe.vae.decode = timed_decode
    encode_prompt = pipe.encode_prompt

    def timed_encode(*args: Any, **kwargs: Any) -> Any:
        timeline.mark("first_work")
        return encode_prompt(*args, **kwargs)

    pipe.encode_prompt = timed_encode
    pipe.transformer.register_forward_pre_hook(lambda *_: timeline.mark("first_work"))
    to_pil = pipeline_module.pil_images

    def timed_to_pil(pixels: torch.Tensor) -> Any:
        images = to_pil(pixels)
        timeline.mark("pil_end")
        return images

    pipeline_module.pil_images = timed_to_pil
    generate = runner.generate

    def timed_generate(*args: Any, **kwargs: Any) -> Any:
        timeline.start_job()
        try:
            return generate(*args, **kwargs)
        finally:
            timeline.mark("generate_end")

    runner.generate = timed_generate


async def _queue(runner: Any, model: str, jobs: int) -> None:
    from bench.runs import queue_jobs
    from fluxbot.core.requests import GenerationRequest
    from fluxbot.engine.encoding import encode_result
    from fluxbot.serving.job import Job
    from fluxbot.serving.scheduler import Scheduler
    from fluxbot.serving.workers.local import LocalWorker

    worker = LocalWorker(
        runner.device, lambda: runner, encode=lambda result: encode_result(result, model)
    )
    scheduler = Scheduler([worker], user_queue_cap=1000, global_queue_cap=1000)
    await scheduler.start()
    await worker.wait_ready()
    specs = queue_jobs(jobs)
    handles = [
        scheduler.submit(Job(f"gap-{i}", i % 4, GenerationRequest(**spec)))
        for i, spec in enumerate(specs)
    ]
    await asyncio.gather(*(h.result() for h in handles))
    await scheduler.shutdown()


def run_gaps(model_dir: Path, device: str, jobs: int, log: Any) -> dict[str, Any]:
    from bench.runs import apply_bot_switches
    from fluxbot.engine.pipeline import FluxRunner

    apply_bot_switches(device)
    runner = FluxRunner.load(str(model_dir), device)
    timeline = Timeline()
    _instrument(runner, timeline)
    asyncio.run(_queue(runner, str(model_dir), 2))  # warm-up
    result: dict[str, Any] = {}
    default_interval = sys.getswitchinterval()
    for label, interval in (("default", default_interval), ("switch 0.5 ms", 0.0005)):
        sys.setswitchinterval(interval)
        timeline.jobs.clear()
        asyncio.run(_queue(runner, str(model_dir), jobs))
        result[label] = timeline.segments_ms()
        log(f"gaps ({label}): {result[label]}")
    sys.setswitchinterval(default_interval)
    return result
