"""LLaVA-1.5, the paper's own architecture: the image placeholder becomes one token per CLIP patch."""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import over, tiny_families
from tests.models.builders.llava import IMAGE_SIDE, IMAGE_TOKENS


@over(tiny_families("llava"))
def test_image_placeholder_expands_to_one_token_per_patch(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["What is in the image?"], [test_image])
    image_token_id = tiny_model.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == IMAGE_TOKENS
    assert tuple(inputs["pixel_values"].shape) == (1, 3, IMAGE_SIDE, IMAGE_SIDE)
    text = tiny_model.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("USER: <image>") and text.rstrip().endswith("ASSISTANT:")
