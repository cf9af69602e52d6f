"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): tiny SigLIP tower, any-res tiles, Qwen2."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from evolens.models import LoadedModel
from evolens.models.processors import without_video_processor
from evolens.verify import verify_model
from tests.models.conftest import (
    GENERIC_VLM_CHAT_TEMPLATE,
    assert_batch_equals_one_by_one,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tokenizer_with_tokens,
)

SIDE, PATCH = 24, 6
TILE_TOKENS = (SIDE // PATCH) ** 2  # SigLIP has no CLS token; "full" keeps every patch
GRID = [[SIDE, SIDE], [SIDE, 2 * SIDE], [2 * SIDE, SIDE], [2 * SIDE, 2 * SIDE]]


@pytest.fixture(scope="module")
def tiny_onevision(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
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
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("onevision"), device, dtype)


def test_loads_with_the_onevision_adapter(tiny_onevision: LoadedModel) -> None:
    assert tiny_onevision.adapter.family == "llava_onevision"
    assert tiny_onevision.final_norm is tiny_onevision.model.model.language_model.norm
    assert type(tiny_onevision.decoder_layers[0]).__name__ == "Qwen2DecoderLayer"


def test_passes_every_verify_check(tiny_onevision: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_onevision, test_image)
    assert report.ok, report.results


def test_image_tokens_cover_base_tile_and_high_res_tiles(
    tiny_onevision: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_onevision.build_inputs(["Describe it."], [test_image])
    (count,) = count_tokens(inputs["input_ids"], tiny_onevision.model.config.image_token_id)
    assert count > TILE_TOKENS
    assert inputs["pixel_values"].shape[-3:] == (3, SIDE, SIDE)


def test_batch_of_two_images_equals_one_by_one(
    tiny_onevision: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_batch_equals_one_by_one(
        tiny_onevision, ["Describe this image.", "What colour is it?"], [test_image, second_image]
    )
