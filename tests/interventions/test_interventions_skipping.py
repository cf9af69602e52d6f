"""Layer skipping and early exit on a tiny random Llama: identity, cache consistency, references."""

from __future__ import annotations

import pytest
import torch

from evolens.interventions import (
    LayerPlan,
    early_exit,
    generate_with_plan,
    greedy_without_cache,
    lens_logits_at_layer,
    skip_layers,
    skipping,
)
from evolens.models import LoadedModel

PROMPTS = ["Name a colour.", "What is the capital of France? Answer in one word, please."]


@pytest.fixture(scope="module")
def batch(tiny_llama: LoadedModel):
    """Two prompts of different lengths: the shorter row is left-padded."""
    inputs = tiny_llama.build_inputs(PROMPTS)
    assert (inputs["attention_mask"] == 0).any()
    return inputs


def test_skipped_layer_is_the_identity_and_does_not_compute(tiny_llama: LoadedModel, batch) -> None:
    layer = tiny_llama.decoder_layers[1]
    seen: dict[str, torch.Tensor] = {}
    mlp_calls: list[int] = []
    hooks = [
        layer.register_forward_pre_hook(lambda _m, args: seen.__setitem__("in", args[0])),
        layer.register_forward_hook(lambda _m, _a, out: seen.__setitem__("out", out)),
        layer.mlp.register_forward_hook(lambda *_: mlp_calls.append(1)),
    ]
    try:
        with torch.inference_mode(), skip_layers(tiny_llama, {1}):
            tiny_llama.model(**batch, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(seen["in"], seen["out"])
    assert mlp_calls == []


def test_skipping_changes_the_output_and_is_undone(tiny_llama: LoadedModel, batch) -> None:
    with torch.inference_mode():
        full = tiny_llama.model(**batch).logits
        with skip_layers(tiny_llama, {2}):
            skipped = tiny_llama.model(**batch).logits
        after = tiny_llama.model(**batch).logits
    assert not torch.allclose(full, skipped)
    assert torch.equal(full, after)
    assert all("forward" not in layer.__dict__ for layer in tiny_llama.decoder_layers)


def test_nested_plans_compose(tiny_llama: LoadedModel, batch) -> None:
    with torch.inference_mode():
        with skip_layers(tiny_llama, {1, 2}):
            both = tiny_llama.model(**batch).logits
        with skip_layers(tiny_llama, {1}), skip_layers(tiny_llama, {2}):
            nested = tiny_llama.model(**batch).logits
    assert torch.equal(both, nested)


def test_skip_nothing_equals_plain_generation(tiny_llama: LoadedModel, batch) -> None:
    plain = tiny_llama.generate(batch, max_new_tokens=8)
    planned = generate_with_plan(tiny_llama, batch, LayerPlan.none(4), max_new_tokens=8)
    assert torch.equal(plain, planned)


@pytest.mark.parametrize("layers", [{0}, {0, 2}, {3}, {1, 2, 3}])
def test_cached_generation_with_skips_matches_full_recompute(tiny_llama: LoadedModel, batch, layers) -> None:
    cached = generate_with_plan(tiny_llama, batch, layers, max_new_tokens=8)
    reference = greedy_without_cache(tiny_llama, batch, 8, layers)
    assert cached.shape == reference.shape
    assert torch.equal(cached, reference)
    assert not torch.equal(cached, tiny_llama.generate(batch, max_new_tokens=8))


def test_without_cache_placeholders_skipping_layer_0_breaks_positions(
    tiny_llama: LoadedModel, batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The placeholder that keeps a skipped layer's cache length is what makes skipping layer 0 exact."""
    reference = greedy_without_cache(tiny_llama, batch, 6, {0})
    monkeypatch.setattr(skipping, "_advance_cache", lambda *_: None)
    try:
        cached = generate_with_plan(tiny_llama, batch, {0}, max_new_tokens=6)
    except (RuntimeError, ValueError, IndexError):
        return  # a crash is also a failure to stay consistent
    assert not torch.equal(cached, reference)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_early_exit_emits_the_argmax_of_the_normed_lens(tiny_llama: LoadedModel, batch, k: int) -> None:
    expected = lens_logits_at_layer(tiny_llama, batch, k).argmax(-1)
    with early_exit(tiny_llama, k):
        first = tiny_llama.generate(batch, max_new_tokens=1)[:, 0]
    assert torch.equal(first, expected)


def test_lens_at_the_last_layer_is_the_models_logits(tiny_llama: LoadedModel, batch) -> None:
    with torch.inference_mode():
        logits = tiny_llama.model(**batch).logits[:, -1, :]
    torch.testing.assert_close(lens_logits_at_layer(tiny_llama, batch, 4), logits, atol=1e-5, rtol=1e-5)


def test_plan_for_another_model_size_is_refused(tiny_llama: LoadedModel) -> None:
    with pytest.raises(ValueError, match="4"), skip_layers(tiny_llama, LayerPlan.of(30, {1})):
        pass
