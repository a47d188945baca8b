"""fp8 linears: accuracy against bf16/fp32, and which FLUX/T5 linears get converted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fluxbot.engine.fp8 import (
    FP8_DTYPE,
    Fp8Linear,
    check_fp8_linears,
    flux_transformer_chooser,
    quantize_linears_,
    quantize_rowwise,
    scaled_mm_supported,
    t5_chooser,
)

needs_scaled_mm = pytest.mark.skipif(
    not scaled_mm_supported("cpu"), reason="this torch has no CPU _scaled_mm"
)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def test_rowwise_quantisation_round_trips_within_fp8_precision() -> None:
    t = torch.randn(64, 128) * torch.logspace(-2, 2, 64).unsqueeze(
        1
    )  # rows of very different scale
    q, scale = quantize_rowwise(t)
    assert q.dtype == FP8_DTYPE and scale.shape == (64, 1)
    assert _rel(q.float() * scale, t) < 0.05


def test_weight_only_linear_matches_the_original() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(5, 7, 64)
    fp8 = Fp8Linear.from_linear(linear, "weight_only")
    assert _rel(fp8(x), linear(x)) < 0.05


@pytest.mark.skipif(not scaled_mm_supported("cpu"), reason="this torch has no CPU _scaled_mm")
def test_dynamic_linear_matches_the_original() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(3, 10, 64, dtype=torch.bfloat16)
    out = Fp8Linear.from_linear(linear, "dynamic")(x)
    assert out.shape == (3, 10, 48) and out.dtype == torch.bfloat16
    assert _rel(out, linear(x)) < 0.08


def test_flux_chooser_skips_modulation_and_down_projections_for_speed() -> None:
    choose = flux_transformer_chooser(dynamic=True, modulation=False, down_projections=False)
    up = nn.Linear(32, 128)
    down = nn.Linear(128, 32)
    assert choose("transformer_blocks.0.attn.to_qkv", nn.Linear(32, 96)) == "dynamic"
    assert choose("transformer_blocks.0.ff.net.0.proj", up) == "dynamic"
    assert choose("transformer_blocks.0.ff.net.2", down) is None
    assert choose("transformer_blocks.0.norm1.linear", up) is None
    assert choose("x_embedder", up) is None  # outside the blocks: left alone
    memory = flux_transformer_chooser(dynamic=False, modulation=True)
    assert memory("single_transformer_blocks.3.norm.linear", up) == "weight_only"
    assert memory("transformer_blocks.0.ff.net.2", down) == "weight_only"


def test_t5_chooser_leaves_wo_alone() -> None:
    # T5 casts its input to wo.weight's dtype: an fp8 weight would make an fp8 activation.
    assert t5_chooser("encoder.block.0.layer.1.DenseReluDense.wo", nn.Linear(64, 32)) is None
    assert t5_chooser("encoder.block.0.layer.0.SelfAttention.q", nn.Linear(32, 32)) == "weight_only"


def test_quantize_linears_replaces_in_place_and_skips_unaligned_shapes() -> None:
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 37))
    report = quantize_linears_(model, lambda name, linear: "weight_only")
    assert isinstance(model[0], Fp8Linear)
    assert type(model[2]) is nn.Linear  # 37 outputs: not a multiple of 16
    assert (report.converted, report.skipped) == (1, 1)
    assert report.bytes_after < report.bytes_before
    model(torch.randn(2, 32))


def _blocks(n: int = 3) -> nn.Module:
    model = nn.Module()
    model.transformer_blocks = nn.ModuleList([nn.Linear(64, 64) for _ in range(n)])
    return model


@needs_scaled_mm
def test_the_load_time_check_passes_ordinary_weights() -> None:
    chooser = flux_transformer_chooser(dynamic=True, modulation=False)
    check = check_fp8_linears(_blocks(), chooser, "cpu")
    assert check.passed and check.checked == 3 and 0 < check.worst_error < 0.08
    assert "passed" in check.describe()


@needs_scaled_mm
def test_the_load_time_check_fails_weights_fp8_cannot_hold() -> None:
    model = _blocks()
    with torch.no_grad():  # beyond e4m3's range: the fp8 copy is NaN, which never passes
        model.transformer_blocks[1].weight[3, 5] = float("inf")
    check = check_fp8_linears(model, flux_transformer_chooser(dynamic=True, modulation=False))
    assert not check.passed and check.worst_name == "transformer_blocks.1"
    assert "FAILED" in check.describe()
