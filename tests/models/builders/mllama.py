"""Mllama (``MllamaForConditionalGeneration``): tiny tiled vision tower read by a cross-attention layer."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessorPil,
    MllamaProcessor,
    MllamaTextConfig,
    MllamaVisionConfig,
)

from tests.models.builders.common import tiny_decoder_kwargs, tokenizer_with_tokens

SIDE, PATCH, MAX_TILES = 24, 6, 2
CROSS_ATTENTION_LAYERS = [1]  # of 3; the real 11B model has 40 layers, cross-attention at 3, 8, ..., 38

# The Llama 3.2 Vision template, with the image marker before the text of the user turn.
MLLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<|image|>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SPECIAL = ["<|image|>", "<|python_tag|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def open_gates(model: MllamaForConditionalGeneration) -> None:
    """Set every tanh gate (cross-attention and gated vision layers) to 1; they start at 0, which would
    shut the image out of the decoder."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "gate" in name and parameter.numel() == 1:
                parameter.fill_(1.0)


def build_mllama(smollm2_tokenizer: Any) -> tuple[MllamaForConditionalGeneration, MllamaProcessor]:
    """3 decoder layers, the middle one cross-attending to up to MAX_TILES tiles of SIDE pixels."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, SPECIAL)
    intermediate_layers = [0, 1]
    vision = MllamaVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
        image_size=SIDE, patch_size=PATCH, max_num_tiles=MAX_TILES,
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        intermediate_layers_indices=intermediate_layers,
        vision_output_dim=32 * (len(intermediate_layers) + 1),
    )  # fmt: skip
    text = MllamaTextConfig(
        **tiny_decoder_kwargs(tokenizer, num_hidden_layers=3), cross_attention_layers=CROSS_ATTENTION_LAYERS
    )
    config = MllamaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<|image|>")
    )
    torch.manual_seed(0)
    model = MllamaForConditionalGeneration(config)
    open_gates(model)
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(
            size={"height": SIDE, "width": SIDE}, max_image_tiles=MAX_TILES
        ),
        tokenizer=tokenizer,
        chat_template=MLLAMA_CHAT_TEMPLATE,
    )
    return model, processor
