"""A tiny-random FLUX pipeline: the real diffusers/transformers classes with tiny configs.

Used by tests and by `FLUXBOT_MODEL=tiny-random`. Tokenizers are built locally (no download) and
weights come from a fixed seed, so every process builds the identical model. The tokenizer
builders also serve the benchmark, which needs full-size vocabularies without the hub.
"""

from __future__ import annotations

from typing import Any

import torch

TINY_SEED = 20240801
CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512
# Characters the locally built T5 vocabulary knows as single pieces.
_T5_CHARS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ".,!?'\"-:;()[]{}/&%$#@*+=<>_~^|\\"
)
_T5_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "and",
    "in",
    "on",
    "with",
    "at",
    "to",
    "for",
    "from",
    "by",
    "is",
    "are",
    "red",
    "blue",
    "green",
    "fox",
    "cat",
    "dog",
    "tree",
    "sky",
    "sun",
    "moon",
    "city",
    "forest",
    "river",
    "mountain",
    "portrait",
    "photo",
    "painting",
    "light",
    "dark",
    "night",
    "day",
]


def _byte_level_alphabet() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def build_clip_tokenizer(vocab_size: int | None = None) -> Any:
    """A byte-level CLIPTokenizer with no merges: every byte is a token, ends of words marked."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    alphabet = _byte_level_alphabet()
    for char in alphabet:
        vocab[char] = len(vocab)
    for char in alphabet:
        vocab[char + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    if vocab_size is not None and vocab_size < len(vocab):
        raise ValueError(f"CLIP vocab_size must be at least {len(vocab)}")
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


def build_t5_tokenizer() -> Any:
    """A unigram T5 tokenizer over single characters and a few common words."""
    from transformers import T5TokenizerFast

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces.append(("▁", -2.0))
    pieces.extend(("▁" + word, -1.0) for word in _T5_WORDS)
    pieces.extend((char, -3.0) for char in _T5_CHARS)
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_tiny_pipeline(dtype: torch.dtype = torch.float32) -> Any:
    """Build the tiny FluxPipeline; identical weights in every process (fixed seed, CPU init)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_clip_tokenizer()
    t5_tokenizer = build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
        )
        eos = clip_tokenizer.convert_tokens_to_ids("<|endoftext|>")
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=clip_tokenizer.convert_tokens_to_ids("<|startoftext|>"),
                eos_token_id=eos,
                pad_token_id=eos,
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(clip_tokenizer),
                projection_dim=32,
                max_position_embeddings=CLIP_MAX_LENGTH,
            )
        )
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(t5_tokenizer),
                d_model=32,
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
            )
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=1,
            sample_size=32,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    for module in (transformer, text_encoder, text_encoder_2, vae):
        module.eval()  # freshly built modules train by default: dropout would make noise
    pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
