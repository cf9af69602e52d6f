"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): tiny windowed ViT, merger, M-RoPE decoder."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from evolens.models import LoadedModel
from tests.models.conftest import save_and_load
from tests.models.qwen_vl_parts import (  # noqa: F401 (the test_* names are collected by pytest)
    qwen_processor,
    qwen_tokenizer,
    test_left_padded_batch_with_mrope_equals_one_by_one,
    test_one_image_token_per_merged_patch,
    test_passes_every_verify_check,
    test_the_image_reaches_the_decoder,
    text_config_kwargs,
    vision_token_ids,
)

PATCH = 14


@pytest.fixture(scope="module")
def tiny_qwen2_5_vl(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=text_config_kwargs(tokenizer),
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
        **vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = qwen_processor(Qwen2_5_VLProcessor, tokenizer, PATCH)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("qwen2_5_vl"), device, dtype)


def test_loads_with_the_qwen2_5_vl_adapter(tiny_qwen2_5_vl: LoadedModel) -> None:
    assert tiny_qwen2_5_vl.adapter.family == "qwen2_5_vl"
    assert tiny_qwen2_5_vl.n_layers == 3
    assert tiny_qwen2_5_vl.final_norm is tiny_qwen2_5_vl.model.model.language_model.norm
    assert tiny_qwen2_5_vl.unembedding is tiny_qwen2_5_vl.model.lm_head


@pytest.fixture(scope="module")
def qwen_vl(tiny_qwen2_5_vl: LoadedModel) -> LoadedModel:
    return tiny_qwen2_5_vl


@pytest.fixture(scope="module")
def expected_image_tokens() -> dict[str, int]:
    # as Qwen2-VL: 96x80 -> 84x84 -> 3x3 merged tokens; 120x64 -> 112x56 -> 4x2 tokens.
    return {"test_image": 9, "second_image": 8}
