"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: tiny ViT + patch merger + a decoder with M-RoPE (3D positions).

Image sizes are chosen so the expected number of image tokens follows from Qwen's resize rule by hand:
both sides rounded to a multiple of patch x merge (28 for Qwen2/2.5, 32 for Qwen3), one token per 2x2 patches.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from evolens.models.processors import without_video_processor
from tests.models.builders.common import tokenizer_with_tokens

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
MERGE = 2
QWEN2_PATCH = 14  # Qwen2-VL and Qwen2.5-VL
QWEN3_PATCH = 16
DEEPSTACK_LEVELS = 2  # Qwen3-VL: vision layers 0 and 1 feed decoder layers 0 and 1; layer 2 gets nothing

# {family: {image fixture: image tokens}}, from the resize rule:
# Qwen2/2.5 (multiples of 28): 96x80 -> 84x84 -> 6x6 patches -> 3x3 merged tokens; 120x64 -> 112x56 -> 4x2.
# Qwen3 (multiples of 32; Python rounds 2.5 to 2): 96x80 -> 96x64 -> 6x4 patches -> 3x2; 120x64 -> 128x64
# -> 4x2.
EXPECTED_IMAGE_TOKENS = {
    "qwen2_vl": {"test_image": 9, "second_image": 8},
    "qwen2_5_vl": {"test_image": 9, "second_image": 8},
    "qwen3_vl": {"test_image": 6, "second_image": 8},
}

# The shape of Qwen's template (without its default system prompt): the image becomes
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to one pad per merged patch.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def qwen_tokenizer(smollm2_tokenizer: Any) -> Any:
    """SmolLM2's tokenizer (it already has <|im_start|>/<|im_end|>) plus Qwen's vision tokens."""
    return tokenizer_with_tokens(smollm2_tokenizer, VISION_TOKENS, chat_template=QWEN_CHAT_TEMPLATE)


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The config's token-id fields for Qwen's vision tokens."""
    start, end, image, video = tokenizer.convert_tokens_to_ids(VISION_TOKENS)
    return {
        "vision_start_token_id": start,
        "vision_end_token_id": end,
        "image_token_id": image,
        "video_token_id": video,
    }


def text_config_kwargs(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """A 3-layer decoder, hidden 64, 4 heads of 16: M-RoPE sections (t, h, w) = (2, 3, 3) halves of 16."""
    kwargs: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    kwargs.update(overrides)
    return kwargs


def qwen_processor(processor_class: type, tokenizer: Any, patch_size: int, max_side_units: int = 4) -> Any:
    """The real processor class without its video part (see ``evolens.models.processors``).

    Images are resized to at most ``max_side_units``^2 blocks of (patch x merge) pixels, at least one.
    """
    unit = patch_size * MERGE
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=MERGE,
        temporal_patch_size=2,
        min_pixels=unit * unit,
        max_pixels=unit * unit * max_side_units**2,
    )
    return without_video_processor(processor_class)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE
    )


def build_qwen2_vl(smollm2_tokenizer: Any) -> tuple[Qwen2VLForConditionalGeneration, Any]:
    """Qwen2-VL: plain ViT and patch merger."""
    tokenizer = qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2VLConfig(
        text_config=text_config_kwargs(tokenizer),
        vision_config={
            "depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": QWEN2_PATCH,
        },
        **vision_token_ids(tokenizer),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    return model, qwen_processor(Qwen2VLProcessor, tokenizer, QWEN2_PATCH)


def build_qwen2_5_vl(smollm2_tokenizer: Any) -> tuple[Qwen2_5_VLForConditionalGeneration, Any]:
    """Qwen2.5-VL: windowed ViT attention (windows of 2x2 merged tokens) with one full-attention block."""
    tokenizer = qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=text_config_kwargs(tokenizer),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": QWEN2_PATCH,
            "window_size": 2 * QWEN2_PATCH * 2,  # so a 3x3 image has several windows
            "fullatt_block_indexes": [1],
        },
        **vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return model, qwen_processor(Qwen2_5_VLProcessor, tokenizer, QWEN2_PATCH)


def build_qwen3_vl(smollm2_tokenizer: Any) -> tuple[Qwen3VLForConditionalGeneration, Any]:
    """Qwen3-VL: DeepStack from DEEPSTACK_LEVELS vision layers, interleaved M-RoPE, Qwen3 decoder."""
    tokenizer = qwen_tokenizer(smollm2_tokenizer)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    }
    config = Qwen3VLConfig(
        text_config=text_config_kwargs(tokenizer, head_dim=16, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": QWEN3_PATCH,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": list(range(DEEPSTACK_LEVELS)),
        },
        **vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config)
    return model, qwen_processor(Qwen3VLProcessor, tokenizer, QWEN3_PATCH)
