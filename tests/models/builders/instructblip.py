"""InstructBLIP: tiny ViT, Q-Former with its own BERT tokenizer, Llama decoder; no chat template."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    BertTokenizer,
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
)

from tests.models.builders.common import tiny_decoder_kwargs, tokenizer_with_tokens

SIDE, PATCH, QUERIES = 24, 6, 8
QFORMER_WORDS = ["describe", "this", "image", "what", "colour", "is", "it", "the", "a", "of", "in"]


def qformer_tokenizer() -> BertTokenizer:
    """A lower-casing WordPiece tokenizer over a tiny vocabulary (stands in for bert-base-uncased)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [
        *specials,
        *QFORMER_WORDS,
        *"abcdefghijklmnopqrstuvwxyz?.,",
        *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
    ]
    return BertTokenizer(vocab={piece: i for i, piece in enumerate(pieces)})


def build_instructblip(
    smollm2_tokenizer: Any,
) -> tuple[InstructBlipForConditionalGeneration, InstructBlipProcessor]:
    """QUERIES query tokens stand for the image, before the prompt."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    qformer_words = qformer_tokenizer()
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=SIDE, patch_size=PATCH,
        ),
        qformer_config=InstructBlipQFormerConfig(
            vocab_size=len(qformer_words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
            pad_token_id=qformer_words.pad_token_id,
        ),
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        num_query_tokens=QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_words,
        num_query_tokens=QUERIES,
    )
    return model, processor
