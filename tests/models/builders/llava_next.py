"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``): tiny CLIP tower over any-resolution tiles."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from tests.models.builders.common import (
    GENERIC_VLM_CHAT_TEMPLATE,
    tiny_decoder_kwargs,
    tiny_vision_kwargs,
    tokenizer_with_tokens,
)

SIDE, PATCH = 24, 6
GRID = [[SIDE, 2 * SIDE], [2 * SIDE, SIDE], [2 * SIDE, 2 * SIDE]]


def build_llava_next(smollm2_tokenizer: Any) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Base tile of SIDE pixels plus high-resolution tiles on GRID."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    vision = CLIPVisionConfig(**tiny_vision_kwargs(SIDE, PATCH), projection_dim=32)
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=GRID,
    )
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE}, image_grid_pinpoints=GRID
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=GENERIC_VLM_CHAT_TEMPLATE,
    )
    return model, processor
