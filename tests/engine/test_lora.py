"""LoRAs on the real tiny-random pipeline: LoRAs made with peft, loaded through diffusers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fluxbot.config import MemoryProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.core.styles import LoraSpec
from fluxbot.engine.lora import (
    LoraError,
    check_lora_fits,
    flux_linear_shapes,
    meta_transformer,
    read_lora,
)
from fluxbot.engine.model_builder import TINY, build_tiny_pipeline
from fluxbot.engine.pipeline import FluxRunner
from tests.lora_files import make_foreign_lora


@pytest.fixture
def lora_dir(tiny_loras: dict[str, Path]) -> Path:
    return tiny_loras["ink"].parent


def fox(lora: LoraSpec | None = None, **kwargs) -> GenerationRequest:  # type: ignore[no-untyped-def]
    fields = {"prompt": "a red fox", "seed": 42, "width": 256, "height": 256, "lora": lora}
    fields.update(kwargs)
    return GenerationRequest(**fields)


def pixels(runner: FluxRunner, request: GenerationRequest) -> np.ndarray:
    return np.asarray(runner.generate([request])[0].images[0]).astype(np.int16)


def test_a_style_changes_the_image_and_is_deterministic(lora_dir: Path) -> None:
    runner = FluxRunner.tiny()
    ink = LoraSpec(str(lora_dir / "ink.safetensors"))
    plain = pixels(runner, fox())
    styled = pixels(runner, fox(ink))
    assert np.abs(plain - styled).mean() > 5
    assert np.array_equal(styled, pixels(runner, fox(ink)))
    assert np.array_equal(plain, pixels(runner, fox()))  # the LoRA is off again
    half = pixels(runner, fox(replace(ink, weight=0.5)))
    assert not np.array_equal(half, styled) and not np.array_equal(half, plain)


def test_fused_lora_equals_stock_diffusers_on_the_unfused_model(lora_dir: Path) -> None:
    """fluxbot merges q/k/v LoRAs for its fused layers; stock diffusers loads the same file on
    the unfused model: the images agree (up to the rounding fusion itself causes)."""
    path = lora_dir / "ink.safetensors"
    runner = FluxRunner.tiny()
    stock_pipe = build_tiny_pipeline()
    stock_pipe.load_lora_weights(str(path), adapter_name="ink")
    stock = FluxRunner(stock_pipe, "cpu", model_name="tiny-random")
    assert hasattr(runner.pipe.transformer.transformer_blocks[0].attn, "to_qkv")
    assert hasattr(stock.pipe.transformer.transformer_blocks[0].attn, "to_q")
    ours = pixels(runner, fox(LoraSpec(str(path))))
    theirs = pixels(stock, fox())
    assert np.abs(ours - theirs).max() <= 2


def test_alternating_two_styles_loads_the_base_once_and_each_lora_once(lora_dir: Path) -> None:
    runner = FluxRunner.tiny()
    base_weight = runner.pipe.transformer.transformer_blocks[0].attn.to_qkv.weight
    ink = LoraSpec(str(lora_dir / "ink.safetensors"))
    glow = LoraSpec(str(lora_dir / "glow.safetensors"), 0.8)
    images = [pixels(runner, fox(spec)) for spec in (ink, glow, ink, glow, None, ink)]
    report = runner.loras.report()
    assert report.mode == "adapters"
    assert report.loads == 2 and report.unloads == 0
    assert [source for source, _ in report.loaded] == [glow.source, ink.source]
    assert all(size > 0 for _, size in report.loaded)
    assert np.array_equal(images[0], images[2]) and np.array_equal(images[0], images[5])
    assert np.array_equal(images[1], images[3])
    assert not np.array_equal(images[0], images[1])
    # The base layer is the same tensor, unchanged: the model was never reloaded.
    layer = runner.pipe.transformer.transformer_blocks[0].attn.to_qkv
    assert layer.base_layer.weight is base_weight


def test_the_least_recently_used_lora_is_unloaded_past_the_cap(lora_dir: Path) -> None:
    runner = FluxRunner.load("tiny-random", "cpu", lora_capacity=1)
    ink = LoraSpec(str(lora_dir / "ink.safetensors"))
    glow = LoraSpec(str(lora_dir / "glow.safetensors"))
    first = pixels(runner, fox(ink))
    pixels(runner, fox(glow))
    report = runner.loras.report()
    assert report.unloads == 1 and [s for s, _ in report.loaded] == [glow.source]
    assert np.array_equal(first, pixels(runner, fox(ink)))  # loaded again, same image
    assert runner.loras.report().loads == 3


def test_slot_switches_keep_compiled_graphs_and_match_named_adapters(lora_dir: Path) -> None:
    """The compiled path: one slot, hot-swapped; switching styles compiles nothing new."""
    from torch._dynamo.utils import counters

    ink = LoraSpec(str(lora_dir / "ink.safetensors"))
    glow = LoraSpec(str(lora_dir / "glow.safetensors"), 0.8)
    adapters = FluxRunner.tiny()
    expected = {spec: pixels(adapters, fox(spec)) for spec in (ink, glow, None)}

    runner = FluxRunner.load("tiny-random", "cpu", loras=[ink, glow], lora_slot=True)
    assert runner.loras.mode == "slot"
    torch._dynamo.reset()
    runner.pipe.transformer.compile_repeated_blocks(fullgraph=True, dynamic=True, backend="eager")
    pixels(runner, fox())  # compiles
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for spec in (ink, glow, None, glow, ink, None):
        got = pixels(runner, fox(spec))
        assert np.abs(got - expected[spec]).max() <= 2, spec
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile
    report = runner.loras.report()
    assert report.loads == 2 and report.slot_bytes > 0 and report.total_bytes > report.slot_bytes


def test_a_lora_larger_than_the_slot_is_refused_not_drawn_wrong(lora_dir: Path) -> None:
    runner = FluxRunner.load(
        "tiny-random", "cpu", loras=[LoraSpec(str(lora_dir / "glow.safetensors"))], lora_slot=True
    )
    with pytest.raises(LoraError, match="rank 8 at layer"):
        runner.generate([fox(LoraSpec(str(lora_dir / "wide.safetensors")))])
    plain = FluxRunner.tiny()
    assert np.array_equal(pixels(runner, fox()), pixels(plain, fox()))


def test_fp8_weights_keep_the_lora_beside_them(lora_dir: Path) -> None:
    ink = LoraSpec(str(lora_dir / "ink.safetensors"))
    runner = FluxRunner.load("tiny-random", "cpu", memory=MemoryProfile.FP8, loras=[ink])
    layer = runner.pipe.transformer.transformer_blocks[0].attn.to_qkv
    assert type(layer.base_layer).__name__ == "Fp8Linear"
    assert type(layer.lora_A["fluxbot_style"]) is torch.nn.Linear  # the LoRA stays unquantised
    plain, styled = pixels(runner, fox()), pixels(runner, fox(ink))
    reference = FluxRunner.tiny()
    assert np.abs(plain - styled).mean() > 5
    # fp8 moves the LoRA image about as far from the full-precision one as without a LoRA
    # does, far less than the LoRA itself moves it.
    off = np.abs(styled - pixels(reference, fox(ink))).mean()
    assert off < np.abs(plain - styled).mean() / 4


def test_lora_checks_name_what_does_not_fit(lora_dir: Path, tmp_path: Path) -> None:
    tiny = flux_linear_shapes(meta_transformer(TINY.transformer))
    check_lora_fits(read_lora(str(lora_dir / "ink.safetensors")), tiny)
    flux = flux_linear_shapes(meta_transformer())
    with pytest.raises(LoraError, match="maps 32->16 features, FLUX's 3072->64"):
        check_lora_fits(read_lora(str(lora_dir / "ink.safetensors")), flux)
    foreign = make_foreign_lora(tmp_path / "sdxl.safetensors")
    with pytest.raises(LoraError, match="not a linear layer of FLUX's transformer"):
        check_lora_fits(read_lora(str(foreign)), tiny)
    with pytest.raises(LoraError, match="does not exist"):
        read_lora(str(tmp_path / "missing.safetensors"))
