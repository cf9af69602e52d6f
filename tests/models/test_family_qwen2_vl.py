"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): tiny ViT, patch merger, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

from evolens.models import LoadedModel
from tests.models import qwen_vl_parts as parts
from tests.models.conftest import save_and_load

# 96x80 -> 84x84 (sides rounded to multiples of 28) -> 6x6 patches -> 3x3 merged tokens;
# 120x64 -> 112x56 -> 8x4 patches -> 4x2 tokens.
FAMILY = "qwen2_vl"
EXPECTED_IMAGE_TOKENS = {"test_image": 9, "second_image": 8}  # read by the shared tests
PATCH = 14


@pytest.fixture(scope="module")
def qwen_vl(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = parts.qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2VLConfig(
        text_config=parts.text_config_kwargs(tokenizer),
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": PATCH},
        **parts.vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    processor = parts.qwen_processor(Qwen2VLProcessor, tokenizer, PATCH)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("qwen2_vl"), device, dtype)


class TestShared(parts.SharedQwenVLTests):
    """Adapter, verify, image tokens, image reaching the decoder, left-padded batches (qwen_vl_parts)."""
