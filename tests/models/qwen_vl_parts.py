"""Parts shared by the Qwen2-VL, Qwen2.5-VL and Qwen3-VL tests: tokens, chat template, decoder, processor.

Image sizes are chosen so the expected number of image tokens follows from Qwen's resize rule by hand:
both sides rounded to a multiple of patch x merge (28 for Qwen2/2.5, 32 for Qwen3), one token per 2x2 patches.
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from evolens.models import LoadedModel
from evolens.models.processors import without_video_processor
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_batch_equals_one_by_one,
    assert_image_reaches_the_decoder,
    count_tokens,
    tokenizer_with_tokens,
)

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
MERGE = 2

# The shape of Qwen's template (without its default system prompt): the image becomes
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to one pad per merged patch.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def qwen_tokenizer(smollm2_tokenizer: Any) -> Any:
    """SmolLM2's tokenizer (it already has <|im_start|>/<|im_end|>) plus Qwen's vision tokens."""
    return tokenizer_with_tokens(smollm2_tokenizer, VISION_TOKENS, chat_template=QWEN_CHAT_TEMPLATE)


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The config's token-id fields for Qwen's vision tokens."""
    start, end, image, video = tokenizer.convert_tokens_to_ids(VISION_TOKENS)
    return {
        "vision_start_token_id": start,
        "vision_end_token_id": end,
        "image_token_id": image,
        "video_token_id": video,
    }


def text_config_kwargs(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """A 3-layer decoder, hidden 64, 4 heads of 16: M-RoPE sections (t, h, w) = (2, 3, 3) halves of 16."""
    kwargs: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    kwargs.update(overrides)
    return kwargs


def qwen_processor(processor_class: type, tokenizer: Any, patch_size: int, max_side_units: int = 4) -> Any:
    """The real processor class without its video part (see ``evolens.models.processors``).

    Images are resized to at most ``max_side_units``^2 blocks of (patch x merge) pixels, at least one.
    """
    unit = patch_size * MERGE
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=MERGE,
        temporal_patch_size=2,
        min_pixels=unit * unit,
        max_pixels=unit * unit * max_side_units**2,
    )
    return without_video_processor(processor_class)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE
    )


class SharedQwenVLTests:
    """Tests every Qwen family module runs by subclassing (``class TestShared(SharedQwenVLTests): ...``);
    the module provides the fixture ``qwen_vl`` (its tiny model) and ``EXPECTED_IMAGE_TOKENS`` ({image
    fixture: tokens}, from its resize rule) and ``FAMILY``."""

    def test_loads_with_its_family_adapter(
        self, qwen_vl: LoadedModel, request: pytest.FixtureRequest
    ) -> None:
        assert qwen_vl.adapter.family == request.module.FAMILY
        assert qwen_vl.n_layers == 3
        assert qwen_vl.final_norm is qwen_vl.model.model.language_model.norm
        assert qwen_vl.unembedding is qwen_vl.model.lm_head

    def test_passes_every_verify_check(self, qwen_vl: LoadedModel, test_image: Image.Image) -> None:
        report = verify_model(qwen_vl, test_image)
        assert report.ok, report.results

    @pytest.mark.parametrize("image_name", ["test_image", "second_image"])
    def test_one_image_token_per_merged_patch(
        self, qwen_vl: LoadedModel, image_name: str, request: pytest.FixtureRequest
    ) -> None:
        expected = request.module.EXPECTED_IMAGE_TOKENS[image_name]
        inputs = qwen_vl.build_inputs(["Describe it."], [request.getfixturevalue(image_name)])
        config = qwen_vl.model.config
        assert count_tokens(inputs["input_ids"], config.image_token_id) == [expected]
        assert int(inputs["image_grid_thw"].prod()) == MERGE * MERGE * expected
        ids = inputs["input_ids"][0].tolist()
        start = ids.index(config.vision_start_token_id)
        assert ids[start + expected + 1] == config.vision_end_token_id

    def test_the_image_reaches_the_decoder(
        self, qwen_vl: LoadedModel, test_image: Image.Image, second_image: Image.Image
    ) -> None:
        assert_image_reaches_the_decoder(qwen_vl, test_image, second_image)

    def test_left_padded_batch_with_mrope_equals_one_by_one(
        self, qwen_vl: LoadedModel, test_image: Image.Image, second_image: Image.Image
    ) -> None:
        # different image grids and prompt lengths: the shorter row is left-padded, and its 3D position
        # ids must still start where they would alone
        assert_batch_equals_one_by_one(
            qwen_vl, ["Describe this image.", "What colour is it?"], [test_image, second_image]
        )
