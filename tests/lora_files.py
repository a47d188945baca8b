"""LoRA files made in the test: peft on the tiny transformer, saved as diffusers saves LoRAs."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "proj_mlp",
    "proj_out",
)


def make_tiny_lora(
    path: Path, *, seed: int, rank: int = 4, alpha: float = 8.0, scale: float = 0.5
) -> Path:
    """A random LoRA for the tiny-random transformer, written to `path` (.safetensors).

    peft creates it on the real tiny transformer (so its layer names and shapes are the model's
    own); `alpha != rank` checks that the scale stored in the file's metadata is honoured.
    """
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from fluxbot.engine.model_builder import build_tiny_pipeline

    transformer = build_tiny_pipeline().transformer
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=list(TINY_TARGETS), init_lora_weights=False
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer.add_adapter(config)
        for name, param in transformer.named_parameters():
            if "lora_" in name:
                param.data = torch.randn_like(param) * scale
    state = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(
        path.parent,
        transformer_lora_layers=state,
        weight_name=path.name,
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    return path


def make_foreign_lora(path: Path) -> Path:
    """A LoRA whose layers are not FLUX's (an SDXL-style UNet name)."""
    from safetensors.torch import save_file

    save_file(
        {
            "transformer.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
            "transformer.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4),
        },
        str(path),
    )
    return path
