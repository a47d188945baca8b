"""CUDA graphs of whole denoising steps: one transformer call replayed from a graph per shape.

Compiled, the `fast` transformer still left ~31 ms of 383 between its kernels for 4 steps at
1024x1024 on an H200 (Python launching ~2,000 kernels a step); a graph replays them with no gaps.
Regional CUDA graphs (torch.compile's "reduce-overhead" per block) fail because each block's
outputs are overwritten by the next; here one graph spans all 57 blocks and its outputs are
copied out before the next replay.

`StepGraphs` sits in the transformer's `_compiled_call_impl` slot and takes part only on a
thread that runs the compiled path (fluxbot.engine.compiled): it replays a captured graph when
one matches the call, captures one when that thread is allowed to (the background compile
thread, right after the shape compiled), and otherwise calls the transformer as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fluxbot.devices.capture_gate import gate_for
from fluxbot.engine.text_graphs import _CAPTURE_LOCK

log = logging.getLogger(__name__)

Key = tuple[Any, ...]

CAPTURE_WAIT_S = 120.0
"""How long a capture waits for the card's other threads to stop working (a job runs at most
minutes; a thread abandoned in a hung call never stops): past it, no more steps are captured."""


@dataclass
class _Step:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]  # static buffers the next call's tensors are copied into
    outputs: tuple[torch.Tensor, ...]


def call_key(kwargs: dict[str, Any]) -> Key | None:
    """What a graph is specialised on, or None when a call cannot be served from one (any
    positional argument, a non-CUDA tensor, a dict of extra attention options...)."""
    key: list[Any] = []
    for name in sorted(kwargs):
        value = kwargs[name]
        if isinstance(value, torch.Tensor):
            if value.device.type != "cuda":
                return None
            key.append((name, tuple(value.shape), value.dtype, value.device))
        elif value is None or isinstance(value, bool | int | float | str):
            key.append((name, value))
        elif isinstance(value, dict) and not value:
            key.append((name, "{}"))  # FluxPipeline's default joint_attention_kwargs
        else:
            return None
    return tuple(key)


class StepGraphs:
    """Graphs of a model's whole forward, one per call shape, on the compiled path only."""

    def __init__(self, model: torch.nn.Module, local: Any) -> None:
        self._eager: Callable[..., Any] = model._call_impl
        self._local = local
        self._steps: dict[Key, _Step] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self.failed: str | None = None  # why no graph is used (a capture failed)
        self.capture_off: str | None = None  # why no new graph is captured (the card was busy)
        model._compiled_call_impl = self

    def captured(self) -> int:
        return len(self._steps)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args or self.failed or not getattr(self._local, "compiled", False):
            return self._eager(*args, **kwargs)
        if not torch.is_inference_mode_enabled() and torch.is_grad_enabled():
            return self._eager(**kwargs)
        key = call_key(kwargs)
        step = self._steps.get(key) if key is not None else None
        if step is None:
            if (
                key is not None
                and self.capture_off is None
                and getattr(self._local, "capture", False)
            ):
                self._capture(key, kwargs)
            return self._eager(**kwargs)
        for name, buffer in step.inputs.items():
            buffer.copy_(kwargs[name])
        step.graph.replay()
        return tuple(out.clone() for out in step.outputs)

    def _capture(self, key: Key, kwargs: dict[str, Any]) -> None:
        """Capture this call's graph (it is not run: the caller runs the call itself, so the
        graph's shared memory pool is only ever used by replays on the serving thread)."""
        static = {
            name: value.clone() if isinstance(value, torch.Tensor) else value
            for name, value in kwargs.items()
        }
        device = next(v for v in static.values() if isinstance(v, torch.Tensor)).device
        # No other thread may work on this device meanwhile (a job's synchronize breaks the
        # capture and fails the job): fluxbot.devices.capture_gate.
        with gate_for(device).capturing(timeout_s=CAPTURE_WAIT_S) as free:
            if not free:
                self.capture_off = f"another thread kept working on {device} {CAPTURE_WAIT_S:g} s"
                log.warning("speed: no more denoising steps captured (%s)", self.capture_off)
                return
            recorded = self._record(static, device)
        if recorded is None:
            return
        graph, outputs = recorded
        if not isinstance(outputs, tuple) or not all(isinstance(o, torch.Tensor) for o in outputs):
            self.failed = f"the model returned {type(outputs).__name__}, not a tuple of tensors"
            log.warning("speed: denoising steps run without CUDA graphs (%s)", self.failed)
            return
        inputs = {n: v for n, v in static.items() if isinstance(v, torch.Tensor)}
        self._steps[key] = _Step(graph, inputs, outputs)

    def _record(
        self, static: dict[str, Any], device: torch.device
    ) -> tuple[torch.cuda.CUDAGraph, Any] | None:
        """The graph of one call and what it returned, or None (logged) if it failed."""
        try:
            with torch.cuda.device(device):
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    self._eager(**static)  # lazy initialisation (cuBLAS workspaces) off-graph
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with (
                    _CAPTURE_LOCK,
                    torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"),
                ):
                    outputs = self._eager(**static)
        except RuntimeError as exc:
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("speed: denoising steps run without CUDA graphs (%s)", self.failed)
            return None
        return graph, outputs
