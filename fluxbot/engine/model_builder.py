"""FLUX's components (transformer, CLIP and T5 text encoders, VAE, tokenizers) built from code at
two sizes: the tiny-random test model and FLUX.1-schnell's full shapes with random weights.

The real diffusers/transformers classes are used at both sizes, so the tiny model exercises the
same code as the real checkpoint and the benchmark's full-size model does its exact compute.
Nothing is downloaded: the tokenizers are built locally (fluxbot.engine.tokenizers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from fluxbot.engine.tokenizers import CLIP_MAX_LENGTH, build_clip_tokenizer, build_t5_tokenizer

TINY_SEED = 20240801


@dataclass(frozen=True)
class FluxSizes:
    """The shapes of the four FLUX modules, as constructor arguments of their classes.

    A text encoder's `vocab_size` defaults to its local tokenizer's. `weight_scale` multiplies
    every 2-D weight after the random init (1.0: left as initialised).
    """

    name: str
    transformer: dict[str, Any] = field(default_factory=dict)
    clip: dict[str, Any] = field(default_factory=dict)
    t5: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    weight_scale: float = 1.0


_VAE_BLOCKS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

TINY = FluxSizes(
    name="tiny",
    transformer={
        "patch_size": 1,
        "in_channels": 16,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "axes_dims_rope": [4, 4, 8],
    },
    clip={
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": 32,
        "max_position_embeddings": CLIP_MAX_LENGTH,
    },
    t5={
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
    },
    vae={
        **_VAE_BLOCKS,
        "block_out_channels": (8, 8, 8, 8),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 1,
        "sample_size": 32,
        "shift_factor": 0.0609,
        "scaling_factor": 1.5035,
    },
)
"""The tiny-random model of tests and `FLUXBOT_MODEL=tiny-random`: seconds on a CPU."""

FULL = FluxSizes(
    name="full",
    transformer={},  # the class's defaults are FLUX.1's (schnell: no guidance embedding)
    clip={
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": CLIP_MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "projection_dim": 768,
    },
    t5={
        "vocab_size": 32128,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dense_act_fn": "gelu_new",
        "is_gated_act": True,
    },
    vae={
        **_VAE_BLOCKS,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 16,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "force_upcast": True,
    },
    # Random weights at full depth: scaled so activations stay finite through 57 blocks.
    weight_scale=0.3,
)
"""FLUX.1-schnell's exact shapes (the benchmark's model): the real checkpoint's compute."""


@contextlib.contextmanager
def _initialising(device: str, dtype: torch.dtype, seed: int | None) -> Iterator[None]:
    """New modules' weights in `dtype` on `device`, from `seed` (the global RNG is restored)."""
    previous = torch.get_default_dtype()
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        stack.callback(torch.set_default_dtype, previous)
        stack.enter_context(torch.device(device))
        yield


def build_components(
    sizes: FluxSizes,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
) -> dict[str, Any]:
    """A FluxPipeline's components at `sizes`, initialised in `dtype` on `device` (from `seed`
    when given, identical in every process then), in eval mode."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_clip_tokenizer()
    t5_tokenizer = build_t5_tokenizer()
    eos = clip_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    clip = {
        "vocab_size": len(clip_tokenizer),
        **sizes.clip,
        "bos_token_id": clip_tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": eos,
        "pad_token_id": eos,
    }
    t5 = {"vocab_size": len(t5_tokenizer), **sizes.t5}
    with _initialising(device, dtype, seed):
        transformer = FluxTransformer2DModel(**sizes.transformer)
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip))
        text_encoder_2 = T5EncoderModel(T5Config(**t5))
        vae = AutoencoderKL(**sizes.vae)
    # diffusers' models are torch modules at run time, but not to the type checker.
    modules: tuple[Any, ...] = (transformer, text_encoder, text_encoder_2, vae)
    if sizes.weight_scale != 1.0:
        with torch.no_grad():
            for module in modules:
                for param in module.parameters():
                    if param.dim() == 2:
                        param.mul_(sizes.weight_scale)
    for module in modules:
        module.eval()  # freshly built modules train by default: dropout would make noise
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": t5_tokenizer,
        "transformer": transformer,
    }


def build_pipeline(
    sizes: FluxSizes,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
) -> Any:
    """A FluxPipeline of `build_components`, its progress bar off."""
    from diffusers import FluxPipeline

    pipe: Any = FluxPipeline(**build_components(sizes, device=device, dtype=dtype, seed=seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_pipeline(dtype: torch.dtype = torch.float32) -> Any:
    """The tiny-random FluxPipeline: identical weights in every process (fixed seed, fp32 init
    on the CPU), then cast to `dtype`."""
    pipe = build_pipeline(TINY, seed=TINY_SEED)
    pipe.to(dtype=dtype)
    return pipe
