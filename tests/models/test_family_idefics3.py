"""Idefics3 and SmolVLM (one adapter, two classes): the image becomes tiles plus a global view."""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import over, tiny_families
from tests.models.builders.idefics3 import TOKENS_PER_TILE
from tests.models.conftest import count_tokens


@over(tiny_families("idefics3"))
def test_image_tokens_are_tiles_plus_global_view(tiny_model: LoadedModel, test_image: Image.Image) -> None:
    inputs = tiny_model.build_inputs(["Describe it."], [test_image])
    (count,) = count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id)
    n_views = inputs["pixel_values"].shape[1]  # (B, tiles + 1 global view, 3, TILE, TILE)
    assert n_views > 1, "a 96x80 image is split into tiles at a 2x24 longest edge"
    assert count == n_views * TOKENS_PER_TILE
    text = tiny_model.tokenizer.decode(inputs["input_ids"][0])
    assert "<global-img>" in text and "<row_1_col_1>" in text
