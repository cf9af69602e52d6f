"""Idefics3 and SmolVLM: tiny SigLIP-like tower on image tiles, pixel-shuffle connector, Llama decoder.

Both classes are built (SmolVLM-256M ships as ``Idefics3ForConditionalGeneration``, SmolVLM2 as
``SmolVLMForConditionalGeneration``) and must load with the same adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMProcessor,
    SmolVLMVisionConfig,
)

from evolens.models.processors import without_video_processor
from tests.models.builders.common import tiny_decoder_kwargs, tokenizer_with_tokens

TILE, PATCH, SCALE = 24, 6, 2
TOKENS_PER_TILE = (TILE // PATCH) ** 2 // SCALE**2
ROW_COL_TOKENS = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
SPECIAL = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *ROW_COL_TOKENS]

# The SmolVLM template: "<|im_start|>User:<image>Describe it.<end_of_utterance>\nAssistant:"
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

VARIANTS = {
    "Idefics3": (Idefics3Config, Idefics3VisionConfig, Idefics3ForConditionalGeneration),
    "SmolVLM": (SmolVLMConfig, SmolVLMVisionConfig, SmolVLMForConditionalGeneration),
}


def build_processor(variant: str, tokenizer: Any) -> Idefics3Processor | SmolVLMProcessor:
    """Images split into tiles of TILE pixels (longest edge 2 x TILE) plus a global view."""
    image_kwargs = {"size": {"longest_edge": 2 * TILE}, "max_image_size": {"longest_edge": TILE}}
    if variant == "Idefics3":
        return Idefics3Processor(
            image_processor=Idefics3ImageProcessorPil(**image_kwargs),
            tokenizer=tokenizer,
            image_seq_len=TOKENS_PER_TILE,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
        )
    # transformers' video processors need torchvision; evolens feeds images only (see models/processors.py)
    return without_video_processor(SmolVLMProcessor)(
        image_processor=SmolVLMImageProcessorPil(**image_kwargs),
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_len=TOKENS_PER_TILE,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )


def build_idefics3(variant: str, smollm2_tokenizer: Any) -> tuple[torch.nn.Module, Any]:
    """``variant`` "Idefics3" or "SmolVLM" (a key of ``VARIANTS``): model and processor."""
    config_class, vision_config_class, model_class = VARIANTS[variant]
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, SPECIAL)
    vision = vision_config_class(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=TILE, patch_size=PATCH,
    )  # fmt: skip
    config = config_class(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=SCALE,
    )
    torch.manual_seed(0)
    return model_class(config), build_processor(variant, tokenizer)
