"""Layer-mix (DeCo-style) decoding: alpha 0 is plain greedy; the first token follows the formula."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from evolens.errors import UsageError
from evolens.interventions import lens_logits_at_layer
from evolens.interventions.layer_mix import generate_with_layer_mix, layer_mix
from evolens.models import LoadedModel


@pytest.fixture(scope="module")
def batch(tiny_llama: LoadedModel):
    return tiny_llama.build_inputs(["Name a colour.", "What is the capital of France? One word."])


def test_alpha_zero_is_plain_greedy(tiny_llama: LoadedModel, batch) -> None:
    plain = tiny_llama.generate(batch, max_new_tokens=6)
    assert torch.equal(generate_with_layer_mix(tiny_llama, batch, [2], 0.0, max_new_tokens=6), plain)


@pytest.mark.parametrize("alpha", [0.5, 50.0, 1e6])
def test_first_token_follows_the_formula(tiny_llama: LoadedModel, batch, alpha: float) -> None:
    final = lens_logits_at_layer(tiny_llama, batch, 4)
    early = lens_logits_at_layer(tiny_llama, batch, 2)
    candidates = final.topk(5, dim=-1).indices
    weight = early.softmax(-1).gather(-1, candidates).max(-1).values
    mixed = final.gather(-1, candidates) + alpha * weight[:, None] * early.gather(-1, candidates)
    expected = candidates.gather(-1, mixed.argmax(-1, keepdim=True))[:, 0]
    first = generate_with_layer_mix(tiny_llama, batch, [2], alpha, top_k=5, max_new_tokens=1)[:, 0]
    assert torch.equal(first, expected)


def test_a_large_alpha_changes_the_output(tiny_llama: LoadedModel, batch) -> None:
    plain = tiny_llama.generate(batch, max_new_tokens=6)
    # a random model's lens probabilities are ~1/V, so w is tiny and alpha must be large to matter
    assert not torch.equal(generate_with_layer_mix(tiny_llama, batch, [1], 1e6, max_new_tokens=6), plain)


def test_anchor_is_the_most_confident_layer(tiny_llama: LoadedModel, batch) -> None:
    final = lens_logits_at_layer(tiny_llama, batch, 4)
    candidates = final.topk(10, dim=-1).indices
    confidence = torch.stack(
        [
            lens_logits_at_layer(tiny_llama, batch, k).softmax(-1).gather(-1, candidates).max(-1).values
            for k in (1, 2, 3)
        ],
        dim=1,
    )
    with layer_mix(tiny_llama, [1, 2, 3], 1.0) as processor:
        tiny_llama.generate(batch, max_new_tokens=1, logits_processor=LogitsProcessorList([processor]))
    assert processor.anchors[0].tolist() == (confidence.argmax(1) + 1).tolist()


def test_hooks_are_removed(tiny_llama: LoadedModel) -> None:
    with layer_mix(tiny_llama, [1, 3], 1.0):
        assert tiny_llama.decoder_layers[0]._forward_hooks
    assert not any(layer._forward_hooks for layer in tiny_llama.decoder_layers)


@pytest.mark.parametrize(("layers", "alpha"), [([0], 1.0), ([4], 1.0), ([], 1.0), ([2], -1.0)])
def test_bad_settings(tiny_llama: LoadedModel, layers: list[int], alpha: float) -> None:
    with pytest.raises(UsageError), layer_mix(tiny_llama, layers, alpha):
        pass
