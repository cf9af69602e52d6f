"""PaliGemma (``PaliGemmaForConditionalGeneration``): tiny SigLIP + projector + Gemma (1) or Gemma 2 decoder.

PaliGemma has no chat template: the adapter's prompt template puts ``<image>`` first and the processor adds
one image token per patch, then BOS, the prompt and "\\n", plus ``token_type_ids``. PaliGemma 2's Gemma-2
decoder soft-caps its logits; the adapter declares it, so the lens repeats the cap.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessorPil,
)

from tests.models.builders.common import tiny_decoder_kwargs, tiny_vision_kwargs

SIDE, PATCH = 28, 7
IMAGE_TOKENS = (SIDE // PATCH) ** 2
SOFTCAP = 2.0  # small enough that the tiny model's raw logits exceed it


def build_paligemma(
    decoder: str, smollm2_tokenizer: Any
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """``decoder`` "gemma" (PaliGemma 1, untied head) or "gemma2" (PaliGemma 2: tied, logit soft-cap)."""
    image_processor = SiglipImageProcessorPil(size={"height": SIDE, "width": SIDE})
    image_processor.image_seq_length = IMAGE_TOKENS
    tokenizer = copy.deepcopy(smollm2_tokenizer)  # the processor adds <image>, <locNNNN>, <segNNN> to it
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = tiny_decoder_kwargs(tokenizer, model_type=decoder, head_dim=16, num_key_value_heads=1)
    if decoder == "gemma2":
        # a window of 8 (real checkpoints: 4096) is shorter than the prompts, so it really cuts
        text.update(final_logit_softcapping=SOFTCAP, query_pre_attn_scalar=16, sliding_window=8)
    config = PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            **tiny_vision_kwargs(SIDE, PATCH),
            "vision_use_head": False,
        },
        text_config=text,
        image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=64,
        hidden_size=64,
        tie_word_embeddings=decoder == "gemma2",
    )
    torch.manual_seed(0)
    return PaliGemmaForConditionalGeneration(config), processor
