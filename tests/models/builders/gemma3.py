"""Gemma 3: the multimodal class (tiny SigLIP + pooled projector + Gemma 3 decoder) and the text-only one.

Both decoders mix sliding-window layers (window 8, shorter than the prompts) with a global one, and both
configs set ``final_logit_softcapping``: ``Gemma3ForCausalLM`` applies it, ``Gemma3ForConditionalGeneration``
ignores it (tests/models/test_family_gemma3.py).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
)

from tests.models.builders.common import tiny_decoder_kwargs, tiny_vision_kwargs, tokenizer_with_named_tokens

SIDE, PATCH = 28, 7  # 4x4 patches, average-pooled to 2x2 = 4 image tokens
IMAGE_TOKENS = 4
SOFTCAP = 0.5  # in both configs; the tiny models' raw logits go well past it, so a cap really bites

# Gemma's template shape: <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma3_decoder_kwargs(tokenizer: Any) -> dict[str, Any]:
    """3 layers (sliding, global, sliding; window 8), head_dim 16, ``final_logit_softcapping`` = SOFTCAP."""
    return tiny_decoder_kwargs(
        tokenizer,
        num_hidden_layers=3,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        final_logit_softcapping=SOFTCAP,
    )


def randomize_projector(model: Gemma3ForConditionalGeneration) -> None:
    """Give the projector's input projection random weights; transformers initialises it to zeros, which
    would shut the image out of the decoder."""
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.02)


def build_gemma3(smollm2_tokenizer: Any) -> tuple[Gemma3ForConditionalGeneration, Gemma3Processor]:
    """``Gemma3ForConditionalGeneration``; ``<start_of_image>`` expands to 4 image tokens between boi/eoi."""
    tokenizer = tokenizer_with_named_tokens(
        smollm2_tokenizer,
        GEMMA3_CHAT_TEMPLATE,
        image_token="<image_soft_token>",
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    config = Gemma3Config(
        text_config=gemma3_decoder_kwargs(tokenizer),
        vision_config={
            "model_type": "siglip_vision_model",
            **tiny_vision_kwargs(SIDE, PATCH),
            "vision_use_head": False,
        },
        mm_tokens_per_image=IMAGE_TOKENS,
        image_token_index=tokenizer.image_token_id,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        tie_word_embeddings=False,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": SIDE, "width": SIDE})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS,
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config)
    randomize_projector(model)
    return model, processor


def build_gemma3_text(smollm2_tokenizer: Any) -> tuple[Gemma3ForCausalLM, Any]:
    """``Gemma3ForCausalLM`` (e.g. gemma-3-270m) with SmolLM2's tokenizer."""
    config = Gemma3TextConfig(**gemma3_decoder_kwargs(smollm2_tokenizer))
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config), smollm2_tokenizer
