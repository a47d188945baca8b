"""`python -m bench safety`: what the image-safety check costs a result on this machine's CPU.

The bot's own path: `SafetyCheckedEncoder` runs NudeNet's detector (onnxruntime, one thread) on
its own thread while the PNGs are encoded, so a result waits max(classify, encode) instead of
encode. Per 1024² image this measures the classifier alone, the encoder alone, and both through
the wrapper (count 1 and count 4); the delay a user feels is the wrapper's time minus the
encoder's. Issue 12's target: under 100 ms on the GPU machine's CPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.png import test_image


def _times_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up (session start, first allocation)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
    }


def run_safety(repeats: int = 30) -> dict[str, Any]:
    from fluxbot.core.requests import GenerationRequest, GenerationResult
    from fluxbot.engine.encoding import encode_result
    from fluxbot.engine.safety import NudeNetClassifier, SafetyCheckedEncoder, letterbox

    classifier = NudeNetClassifier()
    image = test_image()
    out: dict[str, Any] = {"cpu": platform.processor() or platform.machine()}
    out["cpu_count"] = os.cpu_count()
    out["letterbox_1024"] = _summary(_times_ms(lambda: letterbox(image), repeats))
    out["classify_1024"] = _summary(_times_ms(lambda: classifier.classify(image), repeats))

    def result(count: int) -> GenerationResult:
        request = GenerationRequest(prompt="a lighthouse", seed=7, width=1024, height=1024)
        images = [test_image(seed=i) for i in range(count)]
        return GenerationResult(request, images, [7 + i for i in range(count)], "cuda:0")

    encode = lambda r: encode_result(r, model="bench")  # noqa: E731
    checked = SafetyCheckedEncoder(encode, classifier)
    try:
        for count in (1, 4):
            job = result(count)
            plain = _summary(_times_ms(lambda j=job: encode(j), repeats))
            both = _summary(_times_ms(lambda j=job: checked(j), repeats))
            out[f"count_{count}"] = {
                "encode_only": plain,
                "encode_with_safety": both,
                "added_delay_median_ms": both["median_ms"] - plain["median_ms"],
                "added_delay_p95_ms": both["p95_ms"] - plain["p95_ms"],
            }
    finally:
        checked.close()
    return out
