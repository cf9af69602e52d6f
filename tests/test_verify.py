"""``verify_model`` on real and random text-only models, and that it catches a broken adapter."""

from __future__ import annotations

import dataclasses

from evolens.models import LoadedModel
from evolens.verify import verify_model


def test_smollm2_passes_every_check(demo_text: LoadedModel) -> None:
    report = verify_model(demo_text, prompt="Name three colours.", steps=6)
    assert report.ok, report.results
    assert report.results["lens_equals_logits"].value <= 1e-4


def test_tiny_llama_passes_every_check(tiny_llama: LoadedModel) -> None:
    assert verify_model(tiny_llama).ok


def test_broken_unembedding_path_fails(tiny_llama: LoadedModel) -> None:
    broken = dataclasses.replace(tiny_llama.adapter, final_norm=("model.layers.0.post_attention_layernorm",))
    wrong = LoadedModel("broken", tiny_llama.model, tiny_llama.tokenizer, None, broken)
    report = verify_model(wrong)
    assert "lens_equals_logits" in report.failures
