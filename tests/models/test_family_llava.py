"""LLaVA-1.5 (``LlavaForConditionalGeneration``): tiny random CLIP tower + MLP projector + Llama decoder.

The paper's own architecture, so this test goes further than the others: the image placeholder expands
to one token per CLIP patch, the image changes the output, a left-padded batch of two images equals the
same rows run one by one, and a wrong final-norm path is caught at load time.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from evolens.errors import AdapterCheckError
from evolens.models import LoadedModel
from evolens.models.check import check_adapter
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_image_reaches_the_decoder,
    save_and_load,
    tiny_decoder_kwargs,
    tiny_vision_kwargs,
    tokenizer_with_tokens,
)

IMAGE_SIDE, PATCH = 30, 6
IMAGE_TOKENS = (IMAGE_SIDE // PATCH) ** 2  # "default" strategy drops CLIP's CLS token

# The llava-hf/llava-1.5 template: "USER: <image>\n{text} ASSISTANT:"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] + ' ' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_tiny_llava(smollm2_tokenizer) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(**tiny_vision_kwargs(IMAGE_SIDE, PATCH), projection_dim=32)
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        image_token_index=image_token_id,
        image_seq_length=IMAGE_TOKENS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


@pytest.fixture(scope="module")
def tiny_llava(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    model, processor = build_tiny_llava(smollm2_tokenizer)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("llava"), device, dtype)


def test_loads_with_the_llava_adapter(tiny_llava: LoadedModel) -> None:
    assert tiny_llava.adapter.family == "llava"
    assert tiny_llava.n_layers == 2
    assert tiny_llava.final_norm is tiny_llava.model.model.language_model.norm
    assert tiny_llava.unembedding is tiny_llava.model.lm_head


def test_passes_every_verify_check(tiny_llava: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_llava, test_image)
    assert report.ok, report.results


def test_image_placeholder_expands_to_one_token_per_patch(
    tiny_llava: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_llava.build_inputs(["What is in the image?"], [test_image])
    image_token_id = tiny_llava.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == IMAGE_TOKENS
    assert tuple(inputs["pixel_values"].shape) == (1, 3, IMAGE_SIDE, IMAGE_SIDE)
    text = tiny_llava.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("USER: <image>") and text.rstrip().endswith("ASSISTANT:")


def test_the_image_reaches_the_decoder(
    tiny_llava: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_image_reaches_the_decoder(tiny_llava, test_image, second_image)


def test_batch_of_two_images_equals_one_by_one(
    tiny_llava: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    prompts = ["Describe this image.", "What colour is the square in the middle?"]
    images = [test_image, second_image]
    batch_inputs = tiny_llava.build_inputs(prompts, images)
    assert batch_inputs["attention_mask"][0, 0] == 0, "rows of different lengths must be left-padded"
    assert bool(batch_inputs["attention_mask"][:, -1].all())
    batch = tiny_llava.generate(batch_inputs, max_new_tokens=5)
    for row, (prompt, image) in enumerate(zip(prompts, images, strict=True)):
        single = tiny_llava.generate(tiny_llava.build_inputs([prompt], [image]), max_new_tokens=5)
        assert torch.equal(single[0], batch[row])


def test_wrong_final_norm_path_is_caught(tiny_llava: LoadedModel, test_image: Image.Image) -> None:
    wrong_norm = ("model.language_model.layers.1.post_attention_layernorm",)
    broken = dataclasses.replace(tiny_llava.adapter, final_norm=wrong_norm)
    wrong = LoadedModel("broken", tiny_llava.model, tiny_llava.tokenizer, tiny_llava.processor, broken)
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong, dict(wrong.build_inputs(["Describe this image."], [test_image])))
