"""LLaVA-1.5 (``LlavaForConditionalGeneration``): tiny random CLIP tower + MLP projector + Llama decoder.

The paper's own architecture. Also used outside tests/models: the trace CLI tests (the 2-layer row of the
table) and the run tests (a 6-layer one, ``tiny_vlm_dir``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from tests.models.builders.common import tiny_decoder_kwargs, tiny_vision_kwargs, tokenizer_with_tokens

IMAGE_SIDE, PATCH = 30, 6
IMAGE_TOKENS = (IMAGE_SIDE // PATCH) ** 2  # "default" strategy drops CLIP's CLS token

# The llava-hf/llava-1.5 template: "USER: <image>\n{text} ASSISTANT:"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] + ' ' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_tiny_llava(
    smollm2_tokenizer: Any, num_hidden_layers: int = 2
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA on 30-pixel images (one image token per 6-pixel CLIP patch: 25) with a
    ``num_hidden_layers``-layer decoder."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(**tiny_vision_kwargs(IMAGE_SIDE, PATCH), projection_dim=32)
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer, num_hidden_layers=num_hidden_layers)),
        image_token_index=image_token_id,
        image_seq_length=IMAGE_TOKENS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor
