"""LLaVA-OneVision: SigLIP on a base tile plus high-resolution tiles, every patch kept ("full")."""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import over, tiny_families
from tests.models.builders.llava_onevision import SIDE, TILE_TOKENS
from tests.models.conftest import count_tokens


@over(tiny_families("llava_onevision"))
def test_image_tokens_cover_base_tile_and_high_res_tiles(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["Describe it."], [test_image])
    (count,) = count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id)
    assert count > TILE_TOKENS
    assert inputs["pixel_values"].shape[-3:] == (3, SIDE, SIDE)
