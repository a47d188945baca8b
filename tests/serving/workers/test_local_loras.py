"""A local worker on the real tiny pipeline says which LoRAs its replica holds, and their size."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxbot.core.requests import GenerationRequest, JobStatus
from fluxbot.core.styles import LoraSpec
from fluxbot.engine.encoding import encode_result
from fluxbot.engine.pipeline import FluxRunner
from fluxbot.serving.job import Job
from fluxbot.serving.workers.local import LocalWorker


@pytest.fixture
def ink(tiny_loras: dict[str, Path]) -> LoraSpec:
    return LoraSpec(str(tiny_loras["ink"]), 0.9)


async def test_the_worker_reports_the_loras_its_replica_holds(ink: LoraSpec) -> None:
    worker = LocalWorker(
        "cpu", FluxRunner.tiny, encode=lambda result: encode_result(result, "tiny-random")
    )
    worker.start()
    assert await worker.wait_ready()
    assert not worker.holds_lora(ink)
    assert worker.status().loras == "no LoRA loaded"
    request = GenerationRequest(
        prompt="a fox", seed=1, width=256, height=256, style="ink", lora=ink
    )
    [outcome] = await worker.run([Job("j1", 7, request, created=0.0)], lambda _e: None)
    outcome = await worker.finish(outcome)
    try:
        assert outcome.status is JobStatus.DONE
        assert worker.holds_lora(ink)
        assert worker.holds_lora(LoraSpec(ink.source, 0.5))  # same file, other weight
        label = worker.status().loras
        assert label is not None and label.startswith("1/4 LoRA(s),") and "MiB" in label
    finally:
        await worker.close()
