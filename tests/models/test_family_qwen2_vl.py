"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): tiny ViT, patch merger, Qwen2 decoder with M-RoPE."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

from evolens.models import LoadedModel
from evolens.models.verify import verify_model
from tests.models.conftest import assert_batch_equals_one_by_one, count_tokens, save_and_load
from tests.models.qwen_vl_parts import qwen_processor, qwen_tokenizer, text_config_kwargs, vision_token_ids

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


def test_passes_every_verify_check(tiny_qwen2_vl: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_qwen2_vl, test_image)
    assert report.ok, report.results


@pytest.mark.parametrize(
    ("image_name", "expected_tokens"),
    # 96x80 -> 84x84 (sides rounded to multiples of 28) -> 6x6 patches -> 3x3 merged tokens;
    # 120x64 -> 112x56 -> 8x4 patches -> 4x2 tokens.
    [("test_image", 9), ("second_image", 8)],
)
def test_one_image_token_per_merged_patch(
    tiny_qwen2_vl: LoadedModel, image_name: str, expected_tokens: int, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(image_name)
    inputs = tiny_qwen2_vl.build_inputs(["Describe it."], [image])
    config = tiny_qwen2_vl.model.config
    assert count_tokens(inputs["input_ids"], config.image_token_id) == [expected_tokens]
    assert int(inputs["image_grid_thw"].prod()) == 4 * expected_tokens
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(config.vision_start_token_id)
    assert ids[start + expected_tokens + 1] == config.vision_end_token_id


def test_the_image_reaches_the_decoder(
    tiny_qwen2_vl: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    with torch.inference_mode():
        logits = [
            tiny_qwen2_vl.model(**tiny_qwen2_vl.build_inputs(["Describe it."], [image])).logits[0, -1].float()
            for image in (test_image, second_image)
        ]
    assert not torch.allclose(logits[0], logits[1])


def test_left_padded_batch_with_mrope_equals_one_by_one(
    tiny_qwen2_vl: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    # different image grids and prompt lengths: the shorter row is left-padded, and its 3D position ids
    # must still start where they would alone
    assert_batch_equals_one_by_one(
        tiny_qwen2_vl, ["Describe this image.", "What colour is it?"], [test_image, second_image]
    )
