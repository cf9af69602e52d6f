"""Idefics3 and SmolVLM: tiny SigLIP-like tower on image tiles, pixel-shuffle connector, Llama decoder.

Both classes are built (SmolVLM-256M ships as ``Idefics3ForConditionalGeneration``, SmolVLM2 as
``SmolVLMForConditionalGeneration``) and must load with the same adapter.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMProcessor,
    SmolVLMVisionConfig,
)

from evolens.models import LoadedModel
from evolens.models.processors import without_video_processor
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_batch_equals_one_by_one,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tokenizer_with_tokens,
)

TILE, PATCH, SCALE = 24, 6, 2
TOKENS_PER_TILE = (TILE // PATCH) ** 2 // SCALE**2
ROW_COL_TOKENS = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
SPECIAL = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *ROW_COL_TOKENS]

# The SmolVLM template: "<|im_start|>User:<image>Describe it.<end_of_utterance>\nAssistant:"
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

VARIANTS = {
    "Idefics3": (Idefics3Config, Idefics3VisionConfig, Idefics3ForConditionalGeneration),
    "SmolVLM": (SmolVLMConfig, SmolVLMVisionConfig, SmolVLMForConditionalGeneration),
}


def build_processor(variant: str, tokenizer) -> Idefics3Processor | SmolVLMProcessor:
    image_kwargs = {"size": {"longest_edge": 2 * TILE}, "max_image_size": {"longest_edge": TILE}}
    if variant == "Idefics3":
        return Idefics3Processor(
            image_processor=Idefics3ImageProcessorPil(**image_kwargs),
            tokenizer=tokenizer,
            image_seq_len=TOKENS_PER_TILE,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
        )
    # transformers' video processors need torchvision; evolens feeds images only (see models/processors.py)
    return without_video_processor(SmolVLMProcessor)(
        image_processor=SmolVLMImageProcessorPil(**image_kwargs),
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_len=TOKENS_PER_TILE,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )


@pytest.fixture(scope="module", params=list(VARIANTS))
def tiny_idefics3(
    request: pytest.FixtureRequest, smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype
) -> LoadedModel:
    variant = request.param
    config_class, vision_config_class, model_class = VARIANTS[variant]
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, SPECIAL)
    vision = vision_config_class(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=TILE, patch_size=PATCH,
    )  # fmt: skip
    config = config_class(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=SCALE,
    )
    torch.manual_seed(0)
    model = model_class(config)
    processor = build_processor(variant, tokenizer)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp(variant), device, dtype)


def test_loads_with_the_idefics3_adapter(tiny_idefics3: LoadedModel) -> None:
    assert tiny_idefics3.adapter.family == "idefics3"
    assert tiny_idefics3.final_norm is tiny_idefics3.model.model.text_model.norm
    assert tiny_idefics3.n_layers == 2


def test_passes_every_verify_check(tiny_idefics3: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_idefics3, test_image)
    assert report.ok, report.results


def test_image_tokens_are_tiles_plus_global_view(tiny_idefics3: LoadedModel, test_image: Image.Image) -> None:
    inputs = tiny_idefics3.build_inputs(["Describe it."], [test_image])
    (count,) = count_tokens(inputs["input_ids"], tiny_idefics3.model.config.image_token_id)
    n_views = inputs["pixel_values"].shape[1]  # (B, tiles + 1 global view, 3, TILE, TILE)
    assert n_views > 1, "a 96x80 image is split into tiles at a 2x24 longest edge"
    assert count == n_views * TOKENS_PER_TILE
    text = tiny_idefics3.tokenizer.decode(inputs["input_ids"][0])
    assert "<global-img>" in text and "<row_1_col_1>" in text


def test_batch_of_two_images_equals_one_by_one(
    tiny_idefics3: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_batch_equals_one_by_one(
        tiny_idefics3, ["Describe this image.", "What colour is it?"], [test_image, second_image]
    )
