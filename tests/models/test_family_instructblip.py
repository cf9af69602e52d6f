"""InstructBLIP: query tokens stand for the image before the prompt; the Q-Former reads the instruction."""

from __future__ import annotations

import torch
from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import TinyFamily, over, tiny_families
from tests.models.builders.instructblip import QUERIES, SIDE
from tests.models.conftest import count_tokens


@over(tiny_families("instructblip"))
def test_query_tokens_precede_the_prompt(tiny_model: LoadedModel, test_image: Image.Image) -> None:
    inputs = tiny_model.build_inputs(["What colour is it?"], [test_image])
    image_token_id = tiny_model.model.config.image_token_index
    assert count_tokens(inputs["input_ids"], image_token_id) == [QUERIES]
    assert bool((inputs["input_ids"][0, :QUERIES] == image_token_id).all())
    words = tiny_model.processor.qformer_tokenizer.decode(inputs["qformer_input_ids"][0])
    assert "what colour is it" in words  # the Q-Former reads the instruction too, lower-cased
    assert inputs["pixel_values"].shape == torch.Size([1, 3, SIDE, SIDE])


@over(tiny_families("instructblip"))
def test_batch_padding_sits_between_the_query_tokens_and_the_prompt(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    """The processor pads the text, then puts the query tokens first: so not on the left of the row (the
    conformance suite's batch test still holds: the attention mask covers it)."""
    inputs = tiny_model.build_inputs(list(family.batch_prompts), [test_image, second_image])
    image_token_id = tiny_model.model.config.image_token_index
    assert bool((inputs["input_ids"][:, :QUERIES] == image_token_id).all())
    assert bool(inputs["attention_mask"][:, :QUERIES].all())
    assert not bool(inputs["attention_mask"][:, QUERIES:].all()), "the shorter prompt is padded after them"
