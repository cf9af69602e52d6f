"""PaliGemma 1 and 2: no chat template; the prompt is image tokens, BOS, the prompt and a newline.

(PaliGemma 2's logit soft-cap is checked by the conformance suite: its row declares the cap.)
"""

from __future__ import annotations

from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import TinyFamily, over, tiny_families
from tests.models.builders.paligemma import IMAGE_TOKENS, SIDE
from tests.models.conftest import count_tokens


@over(tiny_families("paligemma"))
def test_prompt_layout_is_image_tokens_bos_prompt_newline(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["caption en"], [test_image])
    tokenizer = tiny_model.tokenizer
    ids = inputs["input_ids"][0].tolist()
    image_token_id = tiny_model.model.config.image_token_id
    assert ids[:IMAGE_TOKENS] == [image_token_id] * IMAGE_TOKENS
    assert ids[IMAGE_TOKENS] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[IMAGE_TOKENS + 1 :]) == "caption en\n"
    assert inputs["token_type_ids"].shape == inputs["input_ids"].shape
    assert "labels" not in inputs  # the processor's training targets are no generation input
    assert tuple(inputs["pixel_values"].shape) == (1, 3, SIDE, SIDE)


@over(tiny_families("paligemma"))
def test_each_image_of_a_batch_gets_one_token_per_patch(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(list(family.batch_prompts), [test_image, second_image])
    assert count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id) == [IMAGE_TOKENS] * 2
