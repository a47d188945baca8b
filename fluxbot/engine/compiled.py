"""Compiled graphs built beside the eager path, so no job waits on a compile.

`CompiledPaths` compiles the transformer's repeated blocks (regional compilation: two block types
serve all 57 blocks) and the VAE decoder, and lets each thread choose which form it calls: the
device thread serves every job whose shape is not yet compiled eagerly, while a background
thread compiles shape after shape (a one-step generation through a private copy of the pipeline,
so the job's pipeline and scheduler state are never shared). A shape is "ready" once it has run
compiled; from then on jobs of that shape run compiled without recompiling (dynamo's guards
for it have already passed).

Other pipelines (img2img, inpainting) that share the same transformer and VAE can use the same
`CompiledPaths`: `active(True)` around their own calls, `request()` for the shapes they serve.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx.experimental._config as fx_config

from fluxbot.devices.capture_gate import gate_for
from fluxbot.engine.step_graphs import StepGraphs

log = logging.getLogger(__name__)

COMPILE_QUALITY_TOLERANCE = 0.05
"""Largest relative L2 difference between compiled and eager latents (one step) accepted: bf16
rounding in fused kernels stays near 1e-2; a wrong graph is far above."""


@dataclass(frozen=True, slots=True, order=True)
class ShapeKey:
    """What a compiled graph is specialised on: images in the batch, size, text tokens."""

    images: int
    width: int
    height: int
    tokens: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.images} ({self.tokens} tokens)"


class _Dispatch:
    """Stands in a module's `_compiled_call_impl`: the compiled form on threads that asked for it,
    the module's own eager call elsewhere."""

    def __init__(self, eager: Callable[..., Any], compiled: Callable[..., Any], local: Any) -> None:
        self.eager = eager
        self.compiled = compiled
        self._local = local

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "compiled", False):
            return self.compiled(*args, **kwargs)
        return self.eager(*args, **kwargs)


def compile_targets(pipe: Any) -> list[torch.nn.Module]:
    """The modules compiled: the transformer's repeated blocks, the VAE decoder and encoder
    (image jobs encode their source)."""
    names = set(getattr(pipe.transformer, "_repeated_blocks", ()) or ())
    blocks = [m for m in pipe.transformer.modules() if type(m).__name__ in names]
    return [*blocks, pipe.vae.decoder, pipe.vae.encoder]


Warm = Callable[[ShapeKey], Any]
"""Runs one generation of a shape on the calling thread and returns its latents."""


class CompiledPaths:
    """Switchable compiled forms of a pipeline's hot modules, and the shapes ready to use them."""

    def __init__(
        self,
        modules: Iterable[torch.nn.Module],
        options: dict[str, Any],
        *,
        name: str = "pipeline",
        graph_model: torch.nn.Module | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.name = name
        # Building a shape works on the card (Triton's autotuning synchronises): no CUDA graph
        # capture of another thread meanwhile (fluxbot.devices.capture_gate).
        self._gate = gate_for(device if device is not None else name)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ready: set[ShapeKey] = set()
        self._pending: deque[ShapeKey] = deque()
        self._wanted: set[ShapeKey] = set()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._warm: Warm | None = None
        self._checked = False
        self.disabled: str | None = None  # why the compiled path is off, if it is
        self.compile_seconds = 0.0
        for module in modules:
            compiled = torch.compile(module._call_impl, **options)
            module._compiled_call_impl = _Dispatch(module._call_impl, compiled, self._local)
        self.graphs: StepGraphs | None = None
        if graph_model is not None:
            # Whole denoising steps as CUDA graphs, captured once a shape has compiled.
            self.graphs = StepGraphs(graph_model, self._local)

    # -- which path a thread takes ------------------------------------------------------------

    @contextlib.contextmanager
    def active(self, on: bool) -> Iterator[None]:
        """Run the compiled forms on this thread inside the block (eager if `on` is False)."""
        before = getattr(self._local, "compiled", False)
        self._local.compiled = on
        try:
            yield
        finally:
            self._local.compiled = before

    def is_ready(self, key: ShapeKey) -> bool:
        with self._lock:
            return self.disabled is None and key in self._ready

    def ready_shapes(self) -> list[ShapeKey]:
        with self._lock:
            return sorted(self._ready)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def busy(self) -> bool:
        """Whether the background thread is compiling now or has shapes queued."""
        with self._lock:
            return bool(self._pending) or self._thread is not None

    # -- building -----------------------------------------------------------------------------

    def bind(self, warm: Warm) -> None:
        """What builds a shape: a generation on the calling thread (see FluxRunner)."""
        self._warm = warm

    def request(self, keys: Iterable[ShapeKey], *, first: bool = False) -> None:
        """Compile these shapes in the background, in order (before those already queued with
        `first`: a job is waiting for its shape); ready ones are skipped."""
        if self._warm is None:
            raise RuntimeError("CompiledPaths.bind() was never called")
        with self._lock:
            if self.disabled is not None or self._closed.is_set():
                return
            for key in reversed(list(keys)) if first else keys:
                if key in self._ready:
                    continue
                if key in self._wanted:
                    if not first or key not in self._pending:
                        continue
                    self._pending.remove(key)
                self._wanted.add(key)
                if first:
                    self._pending.appendleft(key)
                else:
                    self._pending.append(key)
            if self._pending and self._thread is None:
                self._thread = threading.Thread(
                    target=self._background, name=f"compile-{self.name}", daemon=True
                )
                self._thread.start()

    def build_now(self, keys: Iterable[ShapeKey]) -> float:
        """Compile these shapes on the calling thread (benchmarks, tests); returns seconds."""
        started = time.perf_counter()
        for key in keys:
            if self.disabled is not None:
                break
            if key not in self._ready:
                self._build(key)
        return time.perf_counter() - started

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait for the background thread to finish what was requested (tests, benchmarks)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (thread := self._thread) is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            thread.join(remaining)
        return True

    def close(self) -> None:
        """Stop after the shape being compiled now."""
        self._closed.set()
        with self._lock:
            self._pending.clear()

    def _background(self) -> None:
        while True:
            with self._lock:
                if not self._pending or self.disabled is not None or self._closed.is_set():
                    self._thread = None  # under the lock: a request() now starts a new one
                    if self.disabled is None and not self._closed.is_set():
                        log.info(
                            "speed: %s: every requested shape compiled (%d ready, %.1f s "
                            "compiling in all)",
                            self.name,
                            len(self._ready),
                            self.compile_seconds,
                        )
                    return
                key = self._pending.popleft()
            try:
                self._build(key)
            except Exception as exc:
                log.exception("compiling %s for %s failed; it stays eager", key, self.name)
                with self._lock:
                    self._wanted.discard(key)
                if self._is_fatal(exc):
                    self._disable(f"compilation failed ({type(exc).__name__})")

    @staticmethod
    def _is_fatal(exc: BaseException) -> bool:
        # Out of memory can pass (a job may hold the memory now); a compiler error will not.
        return "out of memory" not in str(exc).lower()

    def _disable(self, reason: str) -> None:
        with self._lock:
            self.disabled = reason
            self._ready.clear()
            self._pending.clear()
        log.error("speed: %s: the compiled path is off (%s); serving eagerly", self.name, reason)

    def _build(self, key: ShapeKey) -> None:
        with self._gate.working():
            self._build_traced(key)

    def _build_traced(self, key: ShapeKey) -> None:
        # Without duck sizing a square first shape (1024x1024) does not tie width to height in
        # the VAE decoder's guards; with it, the first other aspect recompiled the decoder (seen
        # with the tiny model; on the H200 the fast bot took ~150 s for its 31 later shapes).
        # Only the compiling thread traces, so the process-wide switch affects nothing else.
        with fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]  # set by torch's config module at import
            self._build_shape(key)

    def _build_shape(self, key: ShapeKey) -> None:
        assert self._warm is not None
        started = time.perf_counter()
        if not self._checked:
            self._check_quality(key)
            if self.disabled is not None:
                return
        else:
            with self.active(True):
                self._warm(key)
                if self.graphs is not None and self.graphs.failed is None:
                    self._local.capture = True
                    try:
                        self._warm(key)
                    finally:
                        self._local.capture = False
        seconds = time.perf_counter() - started
        with self._lock:
            self.compile_seconds += seconds
            self._ready.add(key)
        log.info(
            "speed: %s compiled %s in %.1f s; jobs of this shape now run it",
            self.name,
            key,
            seconds,
        )

    def _check_quality(self, key: ShapeKey) -> None:
        """The first compiled shape is checked against the eager path on the same inputs."""
        assert self._warm is not None
        eager = self._warm(key)
        with self.active(True):
            compiled = self._warm(key)
        self._checked = True
        error = relative_error(compiled, eager)
        if not error <= COMPILE_QUALITY_TOLERANCE:  # NaN fails too
            self._disable(
                f"quality check: compiled latents differ from eager by {error:.3g} "
                f"(relative L2, allowed {COMPILE_QUALITY_TOLERANCE})"
            )
            return
        log.info("speed: %s quality check passed: compiled vs eager %.2g", self.name, error)
        if self.graphs is None:
            return
        # The first graph, checked by replaying it: no other graph exists yet, so nothing
        # else can be replaying from the shared memory pool meanwhile.
        with self.active(True):
            self._local.capture = True
            try:
                self._warm(key)
            finally:
                self._local.capture = False
            replayed = self._warm(key) if self.graphs.failed is None else compiled
        error = relative_error(replayed, compiled)
        if not error <= COMPILE_QUALITY_TOLERANCE:
            self.graphs.failed = f"replay differs from the compiled call by {error:.3g}"
            log.error("speed: %s: CUDA graphs off (%s)", self.name, self.graphs.failed)
        elif self.graphs.failed is None:
            log.info("speed: %s CUDA graph replay vs compiled %.2g", self.name, error)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖ / ‖reference‖ in fp32."""
    value, reference = value.detach().float(), reference.detach().float()
    return float((value - reference).norm() / reference.norm().clamp(min=1e-12))


def private_pipeline(pipe: Any) -> Any:
    """A pipeline object sharing `pipe`'s models but with its own scheduler and call state, so
    another thread can run it while `pipe` serves jobs."""
    twin = copy.copy(pipe)
    twin.scheduler = copy.deepcopy(pipe.scheduler)
    return twin
