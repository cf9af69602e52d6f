"""Text-only decoders of the ``causal_lm`` adapter (Llama, Mistral, Qwen2, Qwen3), tiny and random.

SmolLM2 itself (a Llama) is tested on its real weights in tests/test_models_causal_lm.py; here each class
is built from its config, saved with SmolLM2's tokenizer and loaded back through ``load_model``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers

from evolens.models import LoadedModel
from evolens.verify import verify_model
from tests.models.conftest import assert_batch_equals_one_by_one, save_and_load, tiny_decoder_kwargs

# class -> what makes it differ from Llama, set so the tiny model exercises it
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {},
    "MistralForCausalLM": {"sliding_window": 8},  # shorter than the prompts: the window really cuts
    "Qwen2ForCausalLM": {},
    "Qwen3ForCausalLM": {"head_dim": 16},  # Qwen3 also normalises q and k (randomised norms)
}
PROMPTS = ["Name a colour.", "What is the capital of France? Answer in one word, please."]


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def tiny_causal_lm(
    request: pytest.FixtureRequest, smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype
) -> LoadedModel:
    architecture = request.param
    model_class = getattr(transformers, architecture)
    config = model_class.config_class(**tiny_decoder_kwargs(smollm2_tokenizer, **ARCHITECTURES[architecture]))
    torch.manual_seed(0)
    model = model_class(config)
    device, dtype = device_dtype
    return save_and_load(model, smollm2_tokenizer, tmp_path_factory.mktemp(architecture), device, dtype)


def test_loads_with_the_causal_lm_adapter(tiny_causal_lm: LoadedModel) -> None:
    assert tiny_causal_lm.adapter.family == "causal_lm"
    assert type(tiny_causal_lm.model).__name__ in tiny_causal_lm.adapter.hf_classes
    assert tiny_causal_lm.processor is None
    assert tiny_causal_lm.final_norm is tiny_causal_lm.model.model.norm
    assert tiny_causal_lm.unembedding is tiny_causal_lm.model.lm_head


def test_passes_every_verify_check(tiny_causal_lm: LoadedModel) -> None:
    report = verify_model(tiny_causal_lm, prompt="Name three colours.")
    assert report.ok, report.results


def test_left_padded_batch_equals_one_by_one(tiny_causal_lm: LoadedModel) -> None:
    inputs = tiny_causal_lm.build_inputs(PROMPTS)
    assert inputs["attention_mask"][0, 0] == 0, "the shorter prompt must be left-padded"
    window = getattr(tiny_causal_lm.text_config, "sliding_window", None)
    assert window is None or inputs["input_ids"].shape[1] > window
    assert_batch_equals_one_by_one(tiny_causal_lm, PROMPTS, [None, None])  # type: ignore[list-item]
