"""The benchmark's model: FLUX.1-schnell's exact architecture with random weights, saved once.

Building on the GPU in bf16 takes seconds (no download, no 90 GB fp32 init on the CPU); the
compute is the real checkpoint's because the shapes are. Every 2-D weight is scaled by 0.3 so
activations stay finite through 57 blocks (timings do not depend on the values).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

WEIGHT_SCALE = 0.3
MARKER = "fluxbench.json"


def _full_components(device: str) -> dict[str, Any]:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from fluxbot.engine.tiny import build_clip_tokenizer, build_t5_tokenizer

    clip_tokenizer = build_clip_tokenizer()
    t5_tokenizer = build_t5_tokenizer()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel()  # defaults = FLUX.1 (schnell: no guidance embed)
            eos = clip_tokenizer.convert_tokens_to_ids("<|endoftext|>")
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=49408,
                    hidden_size=768,
                    intermediate_size=3072,
                    num_hidden_layers=12,
                    num_attention_heads=12,
                    max_position_embeddings=77,
                    hidden_act="quick_gelu",
                    projection_dim=768,
                    bos_token_id=clip_tokenizer.convert_tokens_to_ids("<|startoftext|>"),
                    eos_token_id=eos,
                    pad_token_id=eos,
                )
            )
            text_encoder_2 = T5EncoderModel(
                T5Config(
                    vocab_size=32128,
                    d_model=4096,
                    d_kv=64,
                    d_ff=10240,
                    num_layers=24,
                    num_heads=64,
                    relative_attention_num_buckets=32,
                    relative_attention_max_distance=128,
                    feed_forward_proj="gated-gelu",
                    dense_act_fn="gelu_new",
                    is_gated_act=True,
                )
            )
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512),
                layers_per_block=2,
                act_fn="silu",
                latent_channels=16,
                norm_num_groups=32,
                sample_size=1024,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
                force_upcast=True,
            )
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for model in (transformer, text_encoder, text_encoder_2, vae):
            for param in model.parameters():
                if param.dim() == 2:
                    param.mul_(WEIGHT_SCALE)
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": t5_tokenizer,
        "transformer": transformer,
    }


def build_pipeline(arch: str, device: str) -> Any:
    """`full`: FLUX.1-schnell's shapes in bf16 on `device`; `tiny`: fluxbot's tiny-random."""
    if arch == "tiny":
        from fluxbot.engine.tiny import build_tiny_pipeline

        return build_tiny_pipeline(torch.float32)
    if arch != "full":
        raise ValueError(f"unknown arch {arch!r}: full or tiny")
    from diffusers import FluxPipeline

    pipe = FluxPipeline(**_full_components(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ensure_saved(arch: str, model_dir: Path, device: str, log: Any = print) -> dict[str, float]:
    """Build and `save_pretrained` the model once (tokenizers included); reuse it if present."""
    marker = model_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("arch") == arch:
        log(f"model already saved in {model_dir}")
        return {}
    started = time.perf_counter()
    pipe = build_pipeline(arch, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    built = time.perf_counter() - started
    log(f"built {arch} model in {built:.1f} s; saving to {model_dir}")
    model_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(model_dir)
    saved = time.perf_counter() - started - built
    marker.write_text(json.dumps({"arch": arch, "weight_scale": WEIGHT_SCALE}))
    log(f"saved in {saved:.1f} s")
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"build_s": built, "save_s": saved}
