"""FLUX's two tokenizers built locally (no download): byte-level CLIP and a small unigram T5.

They serve the tiny-random model, the prompt token budget and the benchmark's full-size model,
none of which may reach the Hugging Face hub.
"""

from __future__ import annotations

from typing import Any

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
    # transformers exports it lazily, so its stubs do not list it.
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces.append(("▁", -2.0))
    pieces.extend(("▁" + word, -1.0) for word in _T5_WORDS)
    pieces.extend((char, -3.0) for char in _T5_CHARS)
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)
