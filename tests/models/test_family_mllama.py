"""Mllama: one image marker in the text; the image enters through a cross-attention layer and its mask.

(That the cross-attention layer is among the hooked decoder layers is in the builder table's layer kinds.)
"""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import over, tiny_families
from tests.models.builders.mllama import MAX_TILES, SIDE
from tests.models.conftest import count_tokens


@over(tiny_families("mllama"))
def test_one_image_marker_and_a_cross_attention_mask(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["Describe it."], [test_image])
    assert count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id) == [1]
    batch, length = inputs["input_ids"].shape
    assert tuple(inputs["cross_attention_mask"].shape) == (batch, length, 1, MAX_TILES)
    assert tuple(inputs["pixel_values"].shape[-3:]) == (3, SIDE, SIDE)
