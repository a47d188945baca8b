"""No job waits on a compile: compiled graphs build in the background while jobs run eagerly.

The tiny model on the CPU, compiled with torch's cheap "eager" backend (dynamo traces and guards
exactly as in production; Inductor would take minutes on two cores).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from fluxbot.config import SpeedProfile
from fluxbot.core.edits import (
    Box,
    ImageEdit,
    Operation,
    PanDirection,
    edit_sizes,
    pan_layout,
    zoom_layout,
)
from fluxbot.core.requests import ASPECT_RATIOS, GenerationRequest, aspect_size
from fluxbot.engine.compiled import CompiledPaths, ShapeKey, relative_error
from fluxbot.engine.encoding import encode_png
from fluxbot.engine.pipeline import TINY_RANDOM, FluxRunner
from fluxbot.engine.speed import warm_shapes

SIZES = [aspect_size(aspect, 1 / 64) for aspect in ASPECT_RATIOS]  # every preset, small
TILE = 1024
LIMITS = {"max_width": 2048, "max_height": 2048, "max_megapixels": 2.0, "upscale_max_side": 4096}
# What an upscale or a pan of the first preset's image runs at (warmed at start as the bot does).
EDIT_SIZES = edit_sizes(*SIZES[0], tile=TILE, **LIMITS)


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.fixture(scope="module")
def runner() -> FluxRunner:
    return FluxRunner.load(
        TINY_RANDOM,
        "cpu",
        speed=SpeedProfile.COMPILE,
        compile_backend="eager",
        warm_sizes=SIZES,
        edit_sizes=EDIT_SIZES,
        background_compile=True,
    )


def test_jobs_run_eagerly_while_the_background_compiles_then_never_recompile(
    runner: FluxRunner,
) -> None:
    paths = runner.compiled
    assert paths is not None and runner.profiles[1] is SpeedProfile.COMPILE
    # Served at once: the first job does not wait for the 32 shapes being compiled.
    width, height = SIZES[0]
    first = runner.generate(
        [GenerationRequest(prompt="now", seed=1, width=width, height=height, steps=1)]
    )
    served_while_compiling = paths.busy()
    assert first[0].path == "eager" or not served_while_compiling
    assert paths.wait_idle(timeout_s=600)
    assert paths.disabled is None
    assert set(paths.ready_shapes()) >= set(warm_shapes(SIZES))

    graphs = _graphs()
    jobs = list(itertools.product(SIZES, (1, 2, 3, 4)))
    paths_taken = []
    for i, ((w, h), count) in enumerate(jobs):
        request = GenerationRequest(
            prompt=f"mixed {i}", seed=i, width=w, height=h, count=count, steps=1
        )
        result = runner.generate([request])[0]
        assert len(result.images) == count
        paths_taken.append(result.path)
    assert _graphs() == graphs, "a job recompiled"
    assert paths_taken == ["compiled"] * len(jobs)


def test_image_jobs_of_a_compiled_shape_run_compiled_without_recompiling(
    runner: FluxRunner,
) -> None:
    # Regression: img2img and inpainting always ran eagerly (under `fast`: the fp8 linears
    # uncompiled), though their transformer and decoder shapes are the text jobs' own.
    paths = runner.compiled
    assert paths is not None and paths.wait_idle(timeout_s=600)
    width, height = SIZES[0]
    made = runner.generate([GenerationRequest("a fox", 4, width=width, height=height, steps=1)])
    source = encode_png(made[0].images[0], {"prompt": "a fox"}, 4).data
    sha = hashlib.sha256(source).hexdigest()
    box = zoom_layout(width, height, 2.0).source
    left = pan_layout(width, height, PanDirection.LEFT, **_pan_limits())
    up = pan_layout(width, height, PanDirection.UP, **_pan_limits())

    edits = [
        (ImageEdit(Operation.VARY, sha, source=source, strength=0.7), (width, height)),
        (ImageEdit(Operation.ZOOM, sha, source=source, zoom=2.0, box=_box(box)), (width, height)),
        # Regression: an upscale's tiles and a pan's canvas are new shapes; compiled at start
        # now, so these image jobs do not run eagerly (nor recompile) either.
        (ImageEdit(Operation.PAN, sha, source=source, pan=PanDirection.LEFT, box=_box(left.source)),
         left.canvas),
        (ImageEdit(Operation.PAN, sha, source=source, pan=PanDirection.UP, box=_box(up.source)),
         up.canvas),
        (ImageEdit(Operation.UPSCALE, sha, source=source, strength=0.3, tile=TILE),
         (2 * width, 2 * height)),
    ]  # fmt: skip
    graphs = _graphs()
    for seed, (edit, (w, h)) in enumerate(edits):
        request = GenerationRequest("a fox", seed, width=w, height=h, steps=2, edit=edit)
        assert runner.generate([request])[0].path == "compiled", edit.operation
    assert _graphs() == graphs, "an image job recompiled"


def _box(box: Box) -> tuple[int, int, int, int]:
    return (box.x, box.y, box.width, box.height)


def _pan_limits() -> dict[str, float]:
    return {k: v for k, v in LIMITS.items() if k != "upscale_max_side"}


def test_an_unwarmed_shape_runs_eagerly_and_compiles_for_the_next_job(runner: FluxRunner) -> None:
    paths = runner.compiled
    assert paths is not None and paths.wait_idle(timeout_s=600)
    odd = GenerationRequest(prompt="odd", seed=3, width=160, height=160, steps=1)
    key = ShapeKey(1, 160, 160, odd.max_sequence_length)
    assert not paths.is_ready(key)
    assert runner.generate([odd])[0].path == "eager"
    assert paths.wait_idle(timeout_s=600) and paths.is_ready(key)
    again = runner.generate([odd])[0]
    assert again.path == "compiled"


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(self.linear(x)) + x


def test_each_thread_chooses_its_own_path() -> None:
    layer = _Block()
    calls: list[str] = []

    def backend(graph: torch.fx.GraphModule, _inputs: list[torch.Tensor]) -> object:
        calls.append("compiled")
        return graph.forward

    paths = CompiledPaths([layer], {"backend": backend, "fullgraph": True})
    x = torch.randn(2, 4)
    layer(x)
    assert calls == []  # eager everywhere by default
    seen: dict[str, int] = {}

    def other() -> None:
        layer(x)
        seen["other"] = len(calls)

    with paths.active(True):
        layer(x)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert calls == ["compiled"] and seen["other"] == 1  # the other thread stayed eager


def test_a_compiled_path_that_disagrees_with_eager_is_switched_off() -> None:
    layer = _Block()

    def wrong(graph: torch.fx.GraphModule, _inputs: list[torch.Tensor]) -> object:
        return lambda *args: [out * 2 for out in graph.forward(*args)]

    paths = CompiledPaths([layer], {"backend": wrong})
    paths.bind(lambda _key: layer(torch.ones(1, 4)))
    paths.build_now([ShapeKey(1, 64, 64, 8)])
    assert paths.disabled is not None and "quality check" in paths.disabled
    assert not paths.is_ready(ShapeKey(1, 64, 64, 8))


def test_building_a_shape_keeps_cuda_graph_captures_out() -> None:
    # Triton's autotuning synchronises the card: no other thread may capture meanwhile.
    from fluxbot.devices.capture_gate import gate_for

    layer = _Block()
    paths = CompiledPaths([layer], {"backend": "eager", "fullgraph": True}, device="cpu")
    seen: list[bool] = []

    def warm(_key: ShapeKey) -> torch.Tensor:
        def probe() -> None:
            with gate_for("cpu").try_capturing() as free:
                seen.append(free)

        other = threading.Thread(target=probe)
        other.start()
        other.join(10)
        return layer(torch.ones(1, 4))

    paths.bind(warm)
    paths.build_now([ShapeKey(1, 64, 64, 8)])
    assert seen and not any(seen)


def test_relative_error_of_a_tensor_that_needs_grad_does_not_warn() -> None:
    reference = torch.ones(4, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert relative_error(reference * 1.5, reference) == pytest.approx(0.5)
