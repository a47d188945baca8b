"""A real CLIP tokenizer built locally (no download): BPE merges trained with `tokenizers` on a
few test words, so those are one token each and other words split into pieces, as rare words do
in the real vocabulary."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

TRAINING_WORDS = (
    "a red fox forest river mountain blurry tiny night it is sunny the in with and of very long "
    "group many words here cat dog tree sky photo painting , . ; ! ?"
)


def build_clip_tokenizer(text: str = TRAINING_WORDS) -> CLIPTokenizer:
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=5000,
        min_frequency=1,
        initial_alphabet=list(bytes_to_unicode().values()),
        end_of_word_suffix="</w>",
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        show_progress=False,
    )
    bpe.train_from_iterator([text], trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=77)


@pytest.fixture(scope="session")
def clip_tokenizer() -> CLIPTokenizer:
    return build_clip_tokenizer()
