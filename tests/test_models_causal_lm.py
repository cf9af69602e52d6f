"""The text-only causal-LM adapter, on the real SmolLM2-135M and on a tiny random Llama."""

from __future__ import annotations

import torch

from evolens.models import LoadedModel
from evolens.models.check import check_adapter


def test_smollm2_adapter_reproduces_logits(demo_text: LoadedModel) -> None:
    assert demo_text.adapter.family == "causal_lm"
    assert demo_text.n_layers == 30
    assert check_adapter(demo_text) <= 1e-4


def test_smollm2_greedy_answer_is_sensible(demo_text: LoadedModel) -> None:
    inputs = demo_text.build_inputs(["What is the capital of France?"])
    new_tokens = demo_text.generate(inputs, max_new_tokens=12)
    assert "Paris" in demo_text.decode(new_tokens[0])


def test_batch_left_padding_matches_one_by_one(demo_text: LoadedModel) -> None:
    prompts = ["Name a colour.", "What is the capital of France? Answer in one word."]
    batch = demo_text.generate(demo_text.build_inputs(prompts), max_new_tokens=8)
    for i, prompt in enumerate(prompts):
        single = demo_text.generate(demo_text.build_inputs([prompt]), max_new_tokens=8)
        assert demo_text.decode(single[0]) == demo_text.decode(batch[i])


def test_tiny_random_llama_passes_the_check(tiny_llama: LoadedModel) -> None:
    assert tiny_llama.n_layers == 4
    assert check_adapter(tiny_llama) <= 1e-5


def test_wrong_final_norm_is_caught(tiny_llama: LoadedModel) -> None:
    import dataclasses

    import pytest

    from evolens.errors import AdapterCheckError

    broken = dataclasses.replace(tiny_llama.adapter, final_norm=("model.layers.0.input_layernorm",))
    wrong = LoadedModel("broken", tiny_llama.model, tiny_llama.tokenizer, None, broken)
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong)
    assert torch.is_tensor(wrong.final_norm.weight)
