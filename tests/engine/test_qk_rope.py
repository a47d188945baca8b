"""q/k RMSNorm, concat and RoPE in one op: diffusers' numbers, on the CPU and in the kernel."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_flux import (
    FluxAttnProcessor,
    FluxSingleTransformerBlock,
    FluxTransformerBlock,
)

from fluxbot.config import SpeedProfile
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine import qk_rope, qk_rope_kernel
from fluxbot.engine.autotune_guard import FirstCallGuard
from fluxbot.engine.qk_rope import (
    drop_qk_norm_rope_,
    processor_class,
    qk_norm_rope,
    qk_norm_rope_reference,
    use_qk_norm_rope_,
)
from fluxbot.engine.speed import apply_speed_profile, fuse_qkv_, plan_speed
from tests.engine.features import CPU, HOPPER
from tests.engine.single_blocks import (
    DIM,
    HEADS,
    assert_compiles_whole_with_the_same_numbers,
    single_block_inputs,
)
from tests.engine.triton_interpreted import run_interpreted

HEAD = DIM // HEADS


Segments = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _segments(batch: int, text: int, image: int, heads: int, width: int, seed: int = 0) -> Segments:
    """Text and image queries as views into wider projections (a row stride that is not the
    width, as the fused q/k/v projection gives), norm weights, and RoPE tables."""
    g = torch.Generator().manual_seed(seed)
    inner = heads * width
    txt_qkv = (torch.randn(batch, text, 3 * inner, generator=g) * 3).to(torch.bfloat16)
    img_qkv = (torch.randn(batch, image, 3 * inner, generator=g) * 3).to(torch.bfloat16)
    txt = txt_qkv[..., :inner].unflatten(-1, (heads, width))
    img = img_qkv[..., inner : 2 * inner].unflatten(-1, (heads, width))
    w_txt = torch.randn(width, generator=g).to(torch.bfloat16)
    w_img = torch.randn(width, generator=g).to(torch.bfloat16)
    angles = torch.randn(text + image, width // 2, generator=g) * 4
    cos = angles.cos().repeat_interleave(2, -1)
    sin = angles.sin().repeat_interleave(2, -1)
    return txt, img, w_txt, w_img, cos, sin


def _block(kind: type, fused: bool) -> Any:
    torch.manual_seed(0)
    block = kind(DIM, HEADS, HEAD).eval()
    if fused:
        block.attn.fuse_projections()
    return block


def _run(block: torch.nn.Module, inputs: dict[str, object]) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        out = block(**inputs)
    return tuple(out)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", [FluxSingleTransformerBlock, FluxTransformerBlock])
def test_the_processor_gives_diffusers_numbers_exactly(kind: type, fused: bool) -> None:
    block = _block(kind, fused)
    inputs = single_block_inputs(torch.float32)
    expected = _run(block, inputs)
    assert use_qk_norm_rope_(block) == 1
    assert isinstance(block.attn.processor, processor_class())
    got = _run(block, inputs)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_the_op_on_the_cpu_is_the_reference_whatever_the_layout() -> None:
    txt, img, w_txt, w_img, cos, sin = _segments(2, 5, 11, 3, 16)
    out = qk_norm_rope(txt, img, w_txt, w_img, cos, sin, 1e-6)
    expected = qk_norm_rope_reference(
        txt.contiguous(), img.contiguous(), w_txt, w_img, cos, sin, 1e-6
    )
    assert out.shape == (2, 16, 3, 16) and out.is_contiguous()
    assert torch.equal(out, expected)
    # the text comes first, normalised with its own weight
    text_only = qk_norm_rope_reference(img[:, :0], txt, w_txt, w_txt, cos[:5], sin[:5], 1e-6)
    assert torch.equal(out[:, :5], text_only)


def test_the_block_with_the_processor_compiles_whole_with_the_same_numbers() -> None:
    block = _block(FluxTransformerBlock, fused=True)
    use_qk_norm_rope_(block)
    assert_compiles_whole_with_the_same_numbers(block, single_block_inputs(torch.float32))


def test_an_attention_mask_or_no_rope_runs_diffusers_own_call() -> None:
    block = _block(FluxSingleTransformerBlock, fused=True)
    inputs = single_block_inputs(torch.float32)
    hidden = torch.cat([inputs["encoder_hidden_states"], inputs["hidden_states"]], dim=1)  # type: ignore[list-item]
    mask = torch.ones(2, 1, 1, hidden.shape[1], dtype=torch.bool)
    mask[..., -3:] = False
    plain = FluxAttnProcessor()
    ours = processor_class()()
    with torch.inference_mode():
        for kwargs in ({"attention_mask": mask}, {"image_rotary_emb": None}):
            expected = plain(block.attn, hidden, **kwargs)
            assert torch.equal(ours(block.attn, hidden, **kwargs), expected)


def test_other_processors_and_norms_keep_their_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    other = _block(FluxSingleTransformerBlock, fused=False)
    other.attn.set_processor(type("Custom", (FluxAttnProcessor,), {})())
    no_weight = _block(FluxSingleTransformerBlock, fused=False)
    no_weight.attn.norm_q = torch.nn.RMSNorm(HEAD, eps=1e-6, elementwise_affine=False)
    plain = _block(FluxTransformerBlock, fused=False)
    holder = torch.nn.ModuleList([other, no_weight, plain])
    with caplog.at_level(logging.INFO, logger="fluxbot.engine.qk_rope"):
        assert use_qk_norm_rope_(holder) == 1
    assert "2 attention(s) keep diffusers' q/k norm and RoPE" in caplog.text
    assert type(other.attn.processor).__name__ == "Custom"
    assert isinstance(plain.attn.processor, processor_class())
    # another diffusers' processor code is never replaced
    monkeypatch.setattr(qk_rope, "FOLLOWED_PROCESSOR", "000000000000")
    fresh = _block(FluxTransformerBlock, fused=False)
    assert use_qk_norm_rope_(fresh) == 0


def test_dropping_restores_diffusers_processor_with_its_backend() -> None:
    block = _block(FluxTransformerBlock, fused=False)
    block.attn.processor._attention_backend = "native"
    use_qk_norm_rope_(block)
    assert block.attn.processor._attention_backend == "native"
    assert use_qk_norm_rope_(block) == 1  # idempotent
    assert drop_qk_norm_rope_(block) == 1
    assert type(block.attn.processor) is FluxAttnProcessor
    assert block.attn.processor._attention_backend == "native"


def test_compiled_profiles_plan_it_and_eager_does_not() -> None:
    assert plan_speed(SpeedProfile.COMPILE, HOPPER).qk_rope
    assert plan_speed(SpeedProfile.FAST, HOPPER).qk_rope
    assert not plan_speed(SpeedProfile.EAGER, HOPPER).qk_rope


def test_the_profile_applies_it_to_every_attention_with_the_same_pixels() -> None:
    from fluxbot.engine.pipeline import FluxRunner

    request = GenerationRequest(prompt="a red fox", seed=3, width=128, height=128)
    plan = plan_speed(SpeedProfile.EAGER, CPU)
    images = {}
    for on in (False, True):
        runner = FluxRunner.tiny()
        report = apply_speed_profile(runner.pipe, replace(plan, qk_rope=on))
        transformer = runner.pipe.transformer
        blocks = len(transformer.single_transformer_blocks) + len(transformer.transformer_blocks)
        assert report.qk_rope_attentions == (blocks if on else 0)
        images[on] = np.asarray(runner.generate([request])[0].images[0])
    assert np.array_equal(images[True], images[False])
    assert fuse_qkv_(runner.pipe.transformer)  # with the fused q/k/v projections the bot uses


_INTERPRETED = """
import sys, torch
from fluxbot.engine import qk_rope_kernel
txt, img, w_txt, w_img, cos, sin = torch.load(sys.argv[1])
batch, positions, heads, width = img.shape
total = positions + txt.shape[1]
out = torch.empty(batch, total, heads, width, dtype=img.dtype)
qk_rope_kernel.launch(txt if txt.shape[1] else img, img, w_txt, w_img, cos, sin, 1e-6, out)
torch.save(out, sys.argv[2])
"""


def _run_kernel_interpreted(inputs: Segments, tmp_path: Path) -> torch.Tensor:
    out: torch.Tensor = run_interpreted(_INTERPRETED, inputs, tmp_path)
    return out


def _truncated(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> bf16 by dropping the low bits: how Triton's interpreter converts (the card rounds
    to nearest even, as torch does)."""
    return (x.float().view(torch.int32) & ~0xFFFF).view(torch.float32)


def _as_interpreted(inputs: Segments) -> torch.Tensor:
    """The kernel's math in torch, converting to bf16 as the interpreter does."""
    txt, img, w_txt, w_img, cos, sin = inputs
    text = txt.shape[1]
    x = torch.cat([txt, img], dim=1).float()
    w = torch.cat([w_txt.expand(text, -1), w_img.expand(img.shape[1], -1)])[None, :, None]
    rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    normed = _truncated(x * rstd * w.float())
    even, odd = normed[..., 0::2], normed[..., 1::2]
    c, s = cos[None, :, None], sin[None, :, None]
    out = torch.empty_like(normed)
    out[..., 0::2] = even * c[..., 0::2] - odd * s[..., 0::2]
    out[..., 1::2] = odd * c[..., 1::2] + even * s[..., 1::2]
    return _truncated(out)


@pytest.mark.skipif(not qk_rope_kernel.available(), reason="Triton is not installed")
@pytest.mark.parametrize(("text", "image"), [(5, 11), (0, 13)])
def test_the_triton_kernel_matches_the_reference_in_triton_s_interpreter(
    text: int, image: int, tmp_path: Path
) -> None:
    inputs = _segments(2, text, image, 3, 32, seed=text)
    got = _run_kernel_interpreted(inputs, tmp_path).float()
    expected = qk_norm_rope_reference(*inputs, 1e-6).float()
    assert got.shape == expected.shape == (2, text + image, 3, 32)
    # Close to torch's everywhere (the interpreter truncates twice where the card rounds: two
    # bf16 steps of the normalised values at most), and the interpreter's own conversions
    # reproduced nearly everywhere (fp32 rsqrt and sums may differ in the last bit).
    assert torch.allclose(got, expected, rtol=2**-6, atol=0.02)
    assert float((got == _as_interpreted(inputs)).float().mean()) > 0.99


def test_first_calls_per_key_reach_the_autotuner_one_thread_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Triton's autotuner is not thread-safe: a job's eager forward and the background compile's
    # warm-up tuning the kernel at once broke a compile on an H200 ('NoneType' object is not a
    # mapping). The autotuner needs a GPU; a stand-in records how many threads are inside it.
    inside, most = [0], [0]
    count = threading.Lock()

    class Autotuned:
        def __getitem__(self, grid: Any) -> Any:
            return self.run

        def run(self, *args: Any, **kwargs: Any) -> None:
            with count:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with count:
                inside[0] -= 1

    monkeypatch.setattr(qk_rope_kernel, "_compiled", Autotuned)
    monkeypatch.setattr(qk_rope_kernel, "_TUNING", FirstCallGuard())
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    img, out = torch.zeros(1, 4, 2, 16), torch.empty(1, 4, 2, 16)
    w, cos = torch.ones(16), torch.ones(4, 16)
    args = (img[:, :0], img, w, w, cos, cos, 1e-6, out)
    threads = [threading.Thread(target=qk_rope_kernel.launch, args=args) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and qk_rope_kernel._TUNING.tuned() == {(2, 16, "torch.float32")}
