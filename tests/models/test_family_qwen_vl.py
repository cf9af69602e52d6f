"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: one image token per merged patch, between the vision markers.

The count follows from Qwen's resize rule (tests/models/builders/qwen_vl.py). That a left-padded batch with
M-RoPE (3D position ids) equals the rows run alone is in the conformance suite.
"""

from __future__ import annotations

import pytest

from evolens.models import LoadedModel
from tests.models.builders import TinyFamily, over, tiny_families
from tests.models.builders.qwen_vl import EXPECTED_IMAGE_TOKENS, MERGE
from tests.models.conftest import count_tokens


@pytest.mark.parametrize("image_name", ["test_image", "second_image"])
@over(tiny_families(*EXPECTED_IMAGE_TOKENS))
def test_one_image_token_per_merged_patch(
    family: TinyFamily, tiny_model: LoadedModel, image_name: str, request: pytest.FixtureRequest
) -> None:
    expected = EXPECTED_IMAGE_TOKENS[family.family][image_name]
    inputs = tiny_model.build_inputs(["Describe it."], [request.getfixturevalue(image_name)])
    config = tiny_model.model.config
    assert count_tokens(inputs["input_ids"], config.image_token_id) == [expected]
    assert int(inputs["image_grid_thw"].prod()) == MERGE * MERGE * expected
    ids = inputs["input_ids"][0].tolist()
    start = ids.index(config.vision_start_token_id)
    assert ids[start + expected + 1] == config.vision_end_token_id
