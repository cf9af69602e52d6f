"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``): tiny CLIP tower over any-resolution tiles."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from evolens.models import LoadedModel
from evolens.verify import verify_model
from tests.models.conftest import (
    GENERIC_VLM_CHAT_TEMPLATE,
    assert_batch_equals_one_by_one,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tiny_vision_kwargs,
    tokenizer_with_tokens,
)

SIDE, PATCH = 24, 6
GRID = [[SIDE, 2 * SIDE], [2 * SIDE, SIDE], [2 * SIDE, 2 * SIDE]]


@pytest.fixture(scope="module")
def tiny_llava_next(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    vision = CLIPVisionConfig(**tiny_vision_kwargs(SIDE, PATCH), projection_dim=32)
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=GRID,
    )
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE}, image_grid_pinpoints=GRID
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=GENERIC_VLM_CHAT_TEMPLATE,
    )
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("llava_next"), device, dtype)


def test_loads_with_the_llava_next_adapter(tiny_llava_next: LoadedModel) -> None:
    assert tiny_llava_next.adapter.family == "llava_next"
    assert tiny_llava_next.final_norm is tiny_llava_next.model.model.language_model.norm


def test_passes_every_verify_check(tiny_llava_next: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_llava_next, test_image)
    assert report.ok, report.results


def test_image_tokens_grow_with_the_tiles(
    tiny_llava_next: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    inputs = tiny_llava_next.build_inputs(["Describe it.", "Describe it."], [test_image, second_image])
    counts = count_tokens(inputs["input_ids"], tiny_llava_next.model.config.image_token_id)
    base_tile = (SIDE // PATCH) ** 2
    assert all(count > base_tile for count in counts), counts  # base tile + high-res tiles + newlines
    assert counts[0] != counts[1], "images of different aspect ratios get different token counts"
    assert inputs["pixel_values"].shape[-2:] == (SIDE, SIDE)
    assert inputs["image_sizes"].tolist() == [[80, 96], [64, 120]]


def test_batch_of_two_images_equals_one_by_one(
    tiny_llava_next: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_batch_equals_one_by_one(
        tiny_llava_next, ["Describe this image.", "What colour is it?"], [test_image, second_image]
    )
