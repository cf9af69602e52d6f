"""The conformance suite: what every model family must do once loaded, run on every row of the builder table
(tests/models/builders) and every device ("cpu-fp32"; "cuda-bf16" when a GPU is present).

Loaded through ``load_model``, a tiny random model must: resolve to its family's adapter and modules; pass
every ``evolens.verify`` check (the lens at the last layer equals the logits, greedy top-1 is the emitted
token, skipping nothing equals plain generation, the trace records the logits, ...); let the image change
the output; emit, in a left-padded batch, exactly what each row emits alone; fail the load-time check with
a wrong final-norm path or a missing logit cap. Family specifics live in test_family_<name>.py.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from evolens.errors import AdapterCheckError
from evolens.models import LoadedModel
from evolens.models.check import check_adapter
from evolens.verify import CHECKS
from tests.models.builders import TINY_FAMILIES, TinyFamily, over, tiny_families
from tests.models.conftest import image_or_none, with_adapter

VERIFY_STEPS = 4  # as ``verify_model``


@over(TINY_FAMILIES)
def test_loads_with_its_family_adapter(family: TinyFamily, tiny_model: LoadedModel) -> None:
    loaded = tiny_model
    assert loaded.adapter.family == family.family
    assert type(loaded.model).__name__ in loaded.adapter.hf_classes
    assert loaded.n_layers == len(family.layer_kinds)
    assert tuple(type(layer).__name__ for layer in loaded.decoder_layers) == family.layer_kinds
    assert loaded.final_norm is loaded.model.get_submodule(family.final_norm)
    assert loaded.unembedding is loaded.model.get_submodule(family.unembedding)
    assert loaded.logit_softcap == family.logit_softcap
    assert loaded.adapter.vision == family.vision
    assert (loaded.processor is not None) == family.vision


@pytest.mark.parametrize("check", list(CHECKS))
@over(TINY_FAMILIES)
def test_passes_the_verify_check(
    family: TinyFamily, tiny_model: LoadedModel, check: str, test_image: Image.Image
) -> None:
    """Each check of ``evolens.verify.CHECKS``, run as ``verify_model`` runs it."""
    image = test_image if family.vision else None
    result = CHECKS[check](tiny_model, image, family.verify_prompt, VERIFY_STEPS)
    assert result.passed, result.detail


@over(tiny_families(vision=True))
def test_the_image_reaches_the_decoder(
    tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    """Two different images under the same prompt must give different last-position logits."""
    with torch.inference_mode():
        logits = [
            tiny_model.model(**tiny_model.build_inputs(["Describe it."], [image])).logits[0, -1].float()
            for image in (test_image, second_image)
        ]
    assert not torch.allclose(logits[0], logits[1])


def sliding_window(text_config: object) -> int | None:
    """The decoder's attention window when some of its layers slide, else None."""
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


@over(TINY_FAMILIES)
def test_left_padded_batch_equals_one_by_one(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    """Two rows of different lengths (and different images): the batch must emit, row by row, exactly the
    tokens each row emits alone, also with M-RoPE (3D positions must start where they would alone) and
    with sliding windows shorter than the prompt."""
    prompts = list(family.batch_prompts)
    images = [test_image, second_image] if family.vision else [None, None]
    inputs = tiny_model.build_inputs(prompts, images if family.vision else None)
    mask = inputs["attention_mask"].bool()
    real = mask.sum(dim=1)
    assert bool(mask[:, -1].all()), "every row must end on a real token"
    assert int(real.min()) < mask.shape[1], "the rows must differ in length, so that one is padded"
    if family.pads_left:
        is_real = torch.arange(mask.shape[1], device=mask.device) >= (mask.shape[1] - real)[:, None]
        assert torch.equal(mask, is_real), "the shorter row must be padded on its left"
    window = sliding_window(tiny_model.text_config)
    assert window is None or int(real.min()) > 2 * window, "the window must cut every row"

    batch = tiny_model.generate(inputs, max_new_tokens=family.new_tokens)
    for row, (prompt, image) in enumerate(zip(prompts, images, strict=True)):
        alone = tiny_model.build_inputs([prompt], [image] if family.vision else None)
        single = tiny_model.generate(alone, max_new_tokens=family.new_tokens)
        assert torch.equal(single[0], batch[row]), f"row {row}: batch {batch[row]} != alone {single[0]}"


def last_layer_norm_path(loaded: LoadedModel) -> str:
    """Dotted path of the last decoder layer's last d_model-sized norm: a norm, but not the final one."""
    layer = loaded.decoder_layers[-1]
    layer_path = next(name for name, module in loaded.model.named_modules() if module is layer)
    hidden = loaded.text_config.hidden_size
    norms = [
        name
        for name, module in layer.named_modules()
        if "norm" in name.rsplit(".", 1)[-1] and getattr(module, "weight", None) is not None
        if tuple(module.weight.shape) == (hidden,)
    ]
    return f"{layer_path}.{norms[-1]}"


@over(TINY_FAMILIES)
def test_wrong_final_norm_path_is_caught(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    wrong = with_adapter(tiny_model, final_norm=(last_layer_norm_path(tiny_model),))
    assert wrong.final_norm is not tiny_model.final_norm
    inputs = dict(wrong.build_inputs([family.verify_prompt], image_or_none(wrong, test_image)))
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong, inputs)


@over(tiny_families(capped=True))
def test_lens_repeats_the_logit_softcap_and_fails_without_it(
    family: TinyFamily, tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    inputs = dict(tiny_model.build_inputs([family.verify_prompt], image_or_none(tiny_model, test_image)))
    with torch.inference_mode():
        assert tiny_model.model(**inputs).logits.abs().max() < family.logit_softcap
    with pytest.raises(AdapterCheckError):
        check_adapter(with_adapter(tiny_model, logit_softcap=None), inputs)
