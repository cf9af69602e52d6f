"""Gemma 3, multimodal (``gemma3``) and text-only (``gemma3_text``): what sets the family apart.

Both scale embeddings by sqrt(d) before decoder layer 0 and use a final norm of x * (1 + w). The multimodal
chat template's ``<start_of_image>`` expands to "\\n\\n<boi>" + image tokens + "<eoi>\\n\\n", and image tokens
attend bidirectionally (``token_type_ids``). Both configs set ``final_logit_softcapping``: the text-only class
applies it (the conformance suite checks the lens repeats it), the multimodal class ignores it, so its adapter
declares no cap. Sliding windows under left padding are in the conformance suite.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from evolens.errors import AdapterCheckError
from evolens.models import LoadedModel
from evolens.models.check import check_adapter
from tests.models.builders import TinyFamily, over, tiny_families
from tests.models.builders.gemma3 import IMAGE_TOKENS, SOFTCAP
from tests.models.conftest import count_tokens, image_or_none, with_adapter


@over(tiny_families("gemma3"))
def test_image_expands_between_begin_and_end_of_image(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(["Describe this image."], [test_image])
    config = tiny_model.model.config
    ids = inputs["input_ids"][0].tolist()
    begin = ids.index(config.boi_token_id)
    assert ids[begin + 1 : begin + 1 + IMAGE_TOKENS] == [config.image_token_id] * IMAGE_TOKENS
    assert ids[begin + 1 + IMAGE_TOKENS] == config.eoi_token_id
    is_image = inputs["input_ids"] == config.image_token_id
    assert torch.equal(inputs["token_type_ids"].bool(), is_image)


@over(tiny_families("gemma3"))
def test_each_image_of_a_batch_gets_its_image_tokens(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    inputs = tiny_model.build_inputs(list(family.batch_prompts), [test_image, second_image])
    assert count_tokens(inputs["input_ids"], tiny_model.model.config.image_token_id) == [IMAGE_TOKENS] * 2


@over(tiny_families("gemma3", "gemma3_text"))
def test_layer_zero_input_is_the_embedding_times_sqrt_d(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    """At text positions (all of them for gemma3_text), layer 0 reads embedding_row * sqrt(d)."""
    loaded = tiny_model
    inputs = loaded.build_inputs(["Describe this image."], image_or_none(loaded, test_image))
    entering: list[torch.Tensor] = []
    handle = loaded.decoder_layers[0].register_forward_pre_hook(lambda _m, args: entering.append(args[0][0]))
    try:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    ids = inputs["input_ids"][0]
    image_token_id = getattr(loaded.model.config, "image_token_id", None)
    is_text = ids != image_token_id if image_token_id is not None else torch.ones_like(ids, dtype=torch.bool)
    table = loaded.embed_tokens.weight
    scale = torch.tensor(math.sqrt(loaded.text_config.hidden_size), dtype=table.dtype)
    torch.testing.assert_close(entering[0][is_text], table[ids[is_text]] * scale)


@over(tiny_families("gemma3", "gemma3_text"))
def test_final_norm_is_x_times_one_plus_w(tiny_model: LoadedModel) -> None:
    loaded = tiny_model
    table = loaded.embed_tokens.weight
    h = torch.randn(5, loaded.text_config.hidden_size, dtype=table.dtype, device=table.device)
    w = loaded.final_norm.weight
    rms = h.float().pow(2).mean(-1, keepdim=True).add(loaded.text_config.rms_norm_eps).rsqrt()
    with torch.inference_mode():
        normed = loaded.final_norm(h)
    torch.testing.assert_close(normed.float(), (h.float() * rms * (1 + w.float())), rtol=1e-2, atol=1e-2)


@over(tiny_families("gemma3"))
def test_final_logit_softcapping_is_ignored_by_the_multimodal_class(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    """Should transformers start capping here, this fails: then declare ``logit_softcap`` in gemma3.py."""
    assert tiny_model.text_config.final_logit_softcapping == SOFTCAP
    assert tiny_model.logit_softcap is None
    inputs = dict(tiny_model.build_inputs(["Describe this image."], [test_image]))
    with torch.inference_mode():
        assert tiny_model.model(**inputs).logits.abs().max() > SOFTCAP
    with pytest.raises(AdapterCheckError):
        check_adapter(with_adapter(tiny_model, logit_softcap="final_logit_softcapping"), inputs)
