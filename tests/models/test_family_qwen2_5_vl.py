"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): tiny windowed ViT, merger, M-RoPE decoder."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from evolens.models import LoadedModel
from tests.models import qwen_vl_parts as parts
from tests.models.conftest import save_and_load

# as Qwen2-VL: 96x80 -> 84x84 -> 3x3 merged tokens; 120x64 -> 112x56 -> 4x2 tokens.
FAMILY = "qwen2_5_vl"
EXPECTED_IMAGE_TOKENS = {"test_image": 9, "second_image": 8}  # read by the shared tests
PATCH = 14


@pytest.fixture(scope="module")
def qwen_vl(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = parts.qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=parts.text_config_kwargs(tokenizer),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": PATCH,
            "window_size": 2 * PATCH * 2,  # windows of 2x2 merged tokens, so a 3x3 image has several
            "fullatt_block_indexes": [1],
        },
        **parts.vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = parts.qwen_processor(Qwen2_5_VLProcessor, tokenizer, PATCH)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("qwen2_5_vl"), device, dtype)


class TestShared(parts.SharedQwenVLTests):
    """Adapter, verify, image tokens, image reaching the decoder, left-padded batches (qwen_vl_parts)."""
