"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): tiny ViT, patch merger, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

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
def tiny_qwen2_vl(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = qwen_tokenizer(smollm2_tokenizer)
    config = Qwen2VLConfig(
        text_config=text_config_kwargs(tokenizer),
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "patch_size": PATCH},
        **vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    processor = qwen_processor(Qwen2VLProcessor, tokenizer, PATCH)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("qwen2_vl"), device, dtype)


def test_loads_with_the_qwen2_vl_adapter(tiny_qwen2_vl: LoadedModel) -> None:
    assert tiny_qwen2_vl.adapter.family == "qwen2_vl"
    assert tiny_qwen2_vl.n_layers == 3
    assert tiny_qwen2_vl.final_norm is tiny_qwen2_vl.model.model.language_model.norm
    assert tiny_qwen2_vl.unembedding is tiny_qwen2_vl.model.lm_head


@pytest.fixture(scope="module")
def qwen_vl(tiny_qwen2_vl: LoadedModel) -> LoadedModel:
    return tiny_qwen2_vl


@pytest.fixture(scope="module")
def expected_image_tokens() -> dict[str, int]:
    # 96x80 -> 84x84 (sides rounded to multiples of 28) -> 6x6 patches -> 3x3 merged tokens;
    # 120x64 -> 112x56 -> 8x4 patches -> 4x2 tokens.
    return {"test_image": 9, "second_image": 8}
