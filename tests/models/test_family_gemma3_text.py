"""Gemma 3 text-only (``Gemma3ForCausalLM``, e.g. gemma-3-270m), tiny and random.

``Gemma3ForCausalLM`` applies ``final_logit_softcapping`` when its config sets one (unlike the multimodal
class), so the adapter declares it and the lens must repeat it. Also checked: the embeddings are scaled by
sqrt(d) before decoder layer 0, and sliding-window layers under left padding.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from evolens.errors import AdapterCheckError
from evolens.models import LoadedModel
from evolens.models.check import check_adapter
from evolens.verify import verify_model
from tests.models.conftest import assert_batch_equals_one_by_one, save_and_load, tiny_decoder_kwargs

SOFTCAP = 0.5  # the tiny model's raw logits go well past it
PROMPTS = ["Name a colour.", "What is the capital of France? Answer in one word, please."]


@pytest.fixture(scope="module")
def tiny_gemma3_text(
    smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype
) -> LoadedModel:
    config = Gemma3TextConfig(
        **tiny_decoder_kwargs(
            smollm2_tokenizer,
            num_hidden_layers=3,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            final_logit_softcapping=SOFTCAP,
        )
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    device, dtype = device_dtype
    return save_and_load(model, smollm2_tokenizer, tmp_path_factory.mktemp("gemma3_text"), device, dtype)


def test_loads_with_the_gemma3_text_adapter(tiny_gemma3_text: LoadedModel) -> None:
    assert tiny_gemma3_text.adapter.family == "gemma3_text"
    assert tiny_gemma3_text.n_layers == 3
    assert tiny_gemma3_text.final_norm is tiny_gemma3_text.model.model.norm
    assert tiny_gemma3_text.logit_softcap == SOFTCAP


def test_passes_every_verify_check(tiny_gemma3_text: LoadedModel) -> None:
    report = verify_model(tiny_gemma3_text, prompt="Name three colours.")
    assert report.ok, report.results


def test_lens_repeats_the_softcap_and_fails_without_it(tiny_gemma3_text: LoadedModel) -> None:
    inputs = dict(tiny_gemma3_text.build_inputs(["Name three colours."]))
    with torch.inference_mode():
        assert tiny_gemma3_text.model(**inputs).logits.abs().max() < SOFTCAP
    uncapped = dataclasses.replace(tiny_gemma3_text.adapter, logit_softcap=None)
    wrong = LoadedModel("uncapped", tiny_gemma3_text.model, tiny_gemma3_text.tokenizer, None, uncapped)
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong, inputs)


def test_layer_zero_input_is_the_embedding_times_sqrt_d(tiny_gemma3_text: LoadedModel) -> None:
    loaded = tiny_gemma3_text
    inputs = loaded.build_inputs(["Name three colours."])
    entering: list[torch.Tensor] = []
    handle = loaded.decoder_layers[0].register_forward_pre_hook(lambda _m, args: entering.append(args[0]))
    try:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    table = loaded.embed_tokens.weight
    scale = torch.tensor(math.sqrt(loaded.text_config.hidden_size), dtype=table.dtype)
    torch.testing.assert_close(entering[0], table[inputs["input_ids"]] * scale)


def test_left_padded_batch_with_sliding_window_equals_one_by_one(tiny_gemma3_text: LoadedModel) -> None:
    inputs = tiny_gemma3_text.build_inputs(PROMPTS)
    assert inputs["attention_mask"][0, 0] == 0
    assert inputs["input_ids"].shape[1] > 2 * tiny_gemma3_text.text_config.sliding_window
    assert_batch_equals_one_by_one(tiny_gemma3_text, PROMPTS, [None, None])  # type: ignore[list-item]
