"""Fake pipeline runners and memory hooks for the scheduler and worker tests.

A `FakeRunner` makes tiny solid images in microseconds and can be told to wait for permits,
hang, fail or run out of memory, so tests control exactly when each job ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from fluxbot.core.requests import GenerationRequest, GenerationResult, StageTimings
from fluxbot.devices.memory import is_out_of_memory, lighter_settings_for
from fluxbot.engine.pipeline import GenerationCancelled, StepProgress
from fluxbot.serving.job import Job

POLL_S = 0.002


def request(prompt: str = "a red fox", **fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {"prompt": prompt, "seed": 1, "width": 256, "height": 256}
    values.update(fields)
    return GenerationRequest(**values)


def job(job_id: str, user_id: int = 1, prompt: str | None = None, **fields: Any) -> Job:
    return Job(job_id=job_id, user_id=user_id, request=request(prompt or job_id, **fields))


@dataclass
class Call:
    prompts: list[str]
    lighter: Any
    thread: str


@dataclass
class FakeLoras:
    """What a runner's LoraAdapters show other threads: the LoRA files it holds."""

    loaded_sources: frozenset[str] = frozenset()

    @property
    def summary(self) -> str:
        return f"{len(self.loaded_sources)} LoRA(s)"


@dataclass
class FakeRunner:
    """A `Runner` whose behaviour each test sets.

    - `permits`: if set, each call waits for one release (and gives up when cancelled), so a
      test decides when a job ends.
    - `hang_prompts`: calls with these prompts block on `unhang`, ignoring cancel.
    - `fail_prompts`: calls with these prompts raise a multi-line RuntimeError.
    - `oom_prompts`: calls with these prompts raise torch.OutOfMemoryError, `oom_times` times
      in all (so 1 means the retry succeeds).
    - `gates`: (prompt, step) -> event: the call waits for the event before that step (step
      `steps + 1`: after the last step, before returning), giving up when cancelled.
    """

    device: str = "cpu"
    permits: threading.Semaphore | None = None
    hang_prompts: set[str] = field(default_factory=set)
    unhang: threading.Event = field(default_factory=threading.Event)
    fail_prompts: set[str] = field(default_factory=set)
    oom_prompts: set[str] = field(default_factory=set)
    oom_times: int = 1
    step_s: float = 0.0
    gates: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    loras: FakeLoras = field(default_factory=FakeLoras)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_step: Callable[[StepProgress], None] | None = None,
        cancel: threading.Event | None = None,
        lighter: Any | None = None,
        want_preview: bool = False,
    ) -> list[GenerationResult]:
        prompts = [r.prompt for r in requests]
        if requests[0].lora is not None:  # a batch loads its LoRA, which then stays loaded
            self.loras = FakeLoras(self.loras.loaded_sources | {requests[0].lora.source})
        self.calls.append(Call(prompts, lighter, threading.current_thread().name))
        self.log.append("generate " + ",".join(prompts))
        if self.hang_prompts.intersection(prompts):
            self.unhang.wait()
            raise RuntimeError("came back from the hang")
        if self.fail_prompts.intersection(prompts):
            raise RuntimeError("boom: the fake pipeline broke\nTraceback (most recent call last)")
        if self.oom_prompts.intersection(prompts) and self.oom_times > 0:
            self.oom_times -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.permits is not None:
            while not self.permits.acquire(timeout=POLL_S):
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled()
        total = requests[0].steps
        for step in range(1, total + 1):
            self._pass_gate(prompts[0], step, cancel)
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            if self.step_s:
                time.sleep(self.step_s)
            if on_step is not None:
                preview = Image.new("RGB", (8, 8), "gray") if want_preview else None
                on_step(StepProgress(step, total, preview))
        self._pass_gate(prompts[0], total + 1, cancel)
        return [
            GenerationResult(
                r,
                [Image.new("RGB", (r.width, r.height), "red") for _ in r.seeds],
                r.seeds,
                self.device,
                timings=StageTimings(text_encode=0.001, denoise=0.002, decode=0.001),
            )
            for r in requests
        ]

    def _pass_gate(self, prompt: str, step: int, cancel: threading.Event | None) -> None:
        gate = self.gates.get((prompt, step))
        while gate is not None and not gate.wait(POLL_S):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()


@dataclass
class FakeMemory:
    """`MemoryHooks` that clean every `clean_every` jobs and log each cleanup to a shared log."""

    log: list[str]
    clean_every: int = 0
    cleanup_s: float = 0.25

    def should_clean(self, jobs_since_clean: int) -> bool:
        return self.clean_every > 0 and jobs_since_clean >= self.clean_every

    def cleanup(self) -> float:
        self.log.append("cleanup")
        return self.cleanup_s

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return is_out_of_memory(exc)

    def lighter(self, requests: Sequence[GenerationRequest]) -> Any:
        return lighter_settings_for(sum(r.image_count for r in requests))


def encode_sizes(result: GenerationResult) -> list[bytes]:
    """A cheap encoder: each image's size as text, plus the thread that did it."""
    name = threading.current_thread().name
    return [f"{im.width}x{im.height}@{name}".encode() for im in result.images]


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait for a condition the code under test makes true; fail the test if it never does."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(POLL_S)
