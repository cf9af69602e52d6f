"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): tiny SigLIP tower, any-res tiles, Qwen2."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from evolens.models.processors import without_video_processor
from tests.models.builders.common import GENERIC_VLM_CHAT_TEMPLATE, tiny_decoder_kwargs, tokenizer_with_tokens

SIDE, PATCH = 24, 6
TILE_TOKENS = (SIDE // PATCH) ** 2  # SigLIP has no CLS token; "full" keeps every patch
GRID = [[SIDE, SIDE], [SIDE, 2 * SIDE], [2 * SIDE, SIDE], [2 * SIDE, 2 * SIDE]]


def build_llava_onevision(
    smollm2_tokenizer: Any,
) -> tuple[LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor]:
    """Base tile of SIDE pixels plus high-resolution tiles on GRID, Qwen2 decoder."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>", "<video>"])
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=SIDE,
        patch_size=PATCH,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=Qwen2Config(**tiny_decoder_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=GRID,
    )
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": SIDE, "width": SIDE}, image_grid_pinpoints=GRID
    )
    # transformers' video processors need torchvision; evolens feeds images only (see models/processors.py)
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=TILE_TOKENS,
        vision_feature_select_strategy="full",
        chat_template=GENERIC_VLM_CHAT_TEMPLATE,
    )
    return model, processor
