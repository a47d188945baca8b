"""The FLUX component builder: the tiny model is the same in every build, the full sizes are
FLUX.1-schnell's, and building leaves the process's RNG and default dtype alone."""

from __future__ import annotations

import torch

from fluxbot.engine.model_builder import FULL, TINY, build_components, build_tiny_pipeline

MODULES = ("transformer", "text_encoder", "text_encoder_2", "vae")


def test_the_tiny_model_is_identical_in_every_build_and_leaves_global_state_alone() -> None:
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)

    first = build_tiny_pipeline()
    again = build_tiny_pipeline(torch.bfloat16)

    assert torch.equal(torch.rand(3), expected_next), "the global RNG is untouched"
    assert torch.get_default_dtype() is torch.float32
    for name in MODULES:
        one, two = getattr(first, name), getattr(again, name)
        assert not one.training, f"{name} must be in eval mode (no dropout noise)"
        for (key, a), (_, b) in zip(
            one.state_dict().items(), two.state_dict().items(), strict=True
        ):
            assert b.dtype is torch.bfloat16
            assert torch.equal(a.to(torch.bfloat16), b), f"{name}.{key} differs between builds"


def test_full_sizes_are_flux_schnells_shapes_in_bf16() -> None:
    parts = build_components(FULL, device="meta", dtype=torch.bfloat16)

    def params(name: str) -> int:
        return sum(p.numel() for p in parts[name].parameters())

    assert torch.get_default_dtype() is torch.float32
    transformer = parts["transformer"]
    assert len(transformer.transformer_blocks) == 19
    assert len(transformer.single_transformer_blocks) == 38
    assert not transformer.config.guidance_embeds  # schnell is guidance-distilled
    assert 11.8e9 < params("transformer") < 12.0e9
    assert 4.7e9 < params("text_encoder_2") < 4.8e9  # T5-XXL's encoder
    assert 120e6 < params("text_encoder") < 125e6  # CLIP ViT-L/14's text tower
    assert parts["vae"].config.latent_channels == 16
    assert {p.dtype for p in transformer.parameters()} == {torch.bfloat16}
    assert params("transformer") > 1000 * sum(
        p.numel() for p in build_components(TINY)["transformer"].parameters()
    )
