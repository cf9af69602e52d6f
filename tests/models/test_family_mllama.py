"""Mllama (``MllamaForConditionalGeneration``): tiny tiled vision tower read by a cross-attention layer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessorPil,
    MllamaProcessor,
    MllamaTextConfig,
    MllamaVisionConfig,
)

from evolens.models import LoadedModel
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_batch_equals_one_by_one,
    assert_image_reaches_the_decoder,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tokenizer_with_tokens,
)

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


@pytest.fixture(scope="module")
def tiny_mllama(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
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
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("mllama"), device, dtype)


def test_loads_with_the_mllama_adapter(tiny_mllama: LoadedModel) -> None:
    assert tiny_mllama.adapter.family == "mllama"
    assert tiny_mllama.final_norm is tiny_mllama.model.model.language_model.norm
    kinds = [type(layer).__name__ for layer in tiny_mllama.decoder_layers]
    assert kinds == [
        "MllamaSelfAttentionDecoderLayer",
        "MllamaCrossAttentionDecoderLayer",
        "MllamaSelfAttentionDecoderLayer",
    ]


def test_passes_every_verify_check(tiny_mllama: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_mllama, test_image)
    assert report.ok, report.results


def test_one_image_marker_and_a_cross_attention_mask(
    tiny_mllama: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_mllama.build_inputs(["Describe it."], [test_image])
    assert count_tokens(inputs["input_ids"], tiny_mllama.model.config.image_token_id) == [1]
    batch, length = inputs["input_ids"].shape
    assert tuple(inputs["cross_attention_mask"].shape) == (batch, length, 1, MAX_TILES)
    assert tuple(inputs["pixel_values"].shape[-3:]) == (3, SIDE, SIDE)


def test_the_image_reaches_the_decoder(
    tiny_mllama: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_image_reaches_the_decoder(tiny_mllama, test_image, second_image)


def test_batch_of_two_images_equals_one_by_one(
    tiny_mllama: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_batch_equals_one_by_one(
        tiny_mllama, ["Describe this image.", "What colour is it?"], [test_image, second_image]
    )
