"""LLaVA-NeXT: any-resolution tiles, so the number of image tokens depends on the image's aspect ratio."""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import over, tiny_families
from tests.models.builders.llava_next import PATCH, SIDE
from tests.models.conftest import count_tokens


@over(tiny_families("llava_next"))
def test_image_tokens_grow_with_the_tiles(
    tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["Describe it.", "Describe it."], [test_image, second_image])
    counts = count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id)
    base_tile = (SIDE // PATCH) ** 2
    assert all(count > base_tile for count in counts), counts  # base tile + high-res tiles + newlines
    assert counts[0] != counts[1], "images of different aspect ratios get different token counts"
    assert inputs["pixel_values"].shape[-2:] == (SIDE, SIDE)
    assert inputs["image_sizes"].tolist() == [[80, 96], [64, 120]]
