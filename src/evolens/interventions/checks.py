"""Invariant checks for layer plans, registered in ``evolens.verify.CHECKS`` for every family.

Each takes (loaded, image, prompt, steps) like the other checks and returns a ``CheckResult``.
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers import BatchFeature

from evolens.interventions.early_exit import early_exit, lens_logits_at_layer
from evolens.interventions.plan import LayerPlan
from evolens.interventions.skipping import generate_with_plan, greedy_without_cache, tokens_until_eos
from evolens.models.check import CheckResult
from evolens.models.loaded import LoadedModel


def _inputs(loaded: LoadedModel, image: Image.Image | None, prompt: str) -> BatchFeature:
    return loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)


def skip_nothing_is_plain(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """Generation through the layer-plan dispatcher with an empty plan equals plain generation."""
    inputs = _inputs(loaded, image, prompt)
    plain = loaded.generate(inputs, max_new_tokens=steps)
    planned = generate_with_plan(loaded, inputs, LayerPlan.none(loaded.n_layers), max_new_tokens=steps)
    return CheckResult.of(
        bool(torch.equal(plain.cpu(), planned.cpu())), f"plain {plain.tolist()} != planned {planned.tolist()}"
    )


def check_plan(loaded: LoadedModel) -> LayerPlan:
    """The plan the checks skip: layer 0 (the one caches read their length from) and a middle layer."""
    n = loaded.n_layers
    return LayerPlan.of(n, {0, n // 2} if n > 2 else {0}) if n > 1 else LayerPlan.none(n)


def skipped_cache_matches_recompute(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """Cached greedy generation with layers skipped == full recomputation at every step with the same skip."""
    inputs = _inputs(loaded, image, prompt)
    plan = check_plan(loaded)
    cached = generate_with_plan(loaded, inputs, plan, max_new_tokens=steps)
    reference = greedy_without_cache(loaded, inputs, steps, plan)
    for row in range(cached.shape[0]):
        emitted = tokens_until_eos(cached[row], loaded.eos_token_ids)
        expected = reference[row, : len(emitted)].tolist()
        if emitted != expected:
            return CheckResult.of(False, f"row {row}: cached {emitted} != recomputed {expected}")
    return CheckResult.of(True)


def early_exit_is_lens_top1(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """Exiting at lens layer k emits, at the first step, the argmax of the normed lens of layer k."""
    inputs = _inputs(loaded, image, prompt)
    layer = max(1, loaded.n_layers // 2)
    expected = lens_logits_at_layer(loaded, inputs, layer).argmax(-1)
    with early_exit(loaded, layer):
        emitted = loaded.generate(inputs, max_new_tokens=1)[:, 0]
    return CheckResult.of(
        bool(torch.equal(expected.cpu(), emitted.cpu())),
        f"exit at {layer} emitted {emitted.tolist()}, the lens top-1 is {expected.tolist()}",
    )


PLAN_CHECKS = {
    "skip_nothing_is_plain": skip_nothing_is_plain,
    "skipped_cache_matches_recompute": skipped_cache_matches_recompute,
    "early_exit_is_lens_top1": early_exit_is_lens_top1,
}
