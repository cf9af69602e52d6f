"""Invariant checks any supported model must pass; family tests and ``evolens verify`` both use them.

1. inputs build from an image (for VLMs) and a prompt;
2. the lens at the last layer equals the model's logits (``check_adapter``);
3. with greedy decoding, the last layer's top-1 under the lens is the emitted token at every step.
Later steps of the data path (tracing, layer skipping) add their own checks to ``CHECKS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from evolens.interventions.checks import PLAN_CHECKS
from evolens.models.check import check_adapter, last_layer_output, logits_from_last_layer
from evolens.models.loaded import LoadedModel
from evolens.trace_check import TRACE_CHECKS


@dataclass
class VerifyReport:
    """Outcome of ``verify_model``: one entry per check, value = measured number or True."""

    model: str
    results: dict[str, float | bool | str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


Check = Callable[[LoadedModel, "Image.Image | None", str, int], "float | bool"]


def greedy_top1_matches_emitted(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> bool:
    """Generate greedily; at each step the lens top-1 of the last layer must be the emitted token."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    states: list[torch.Tensor] = []
    hook = loaded.decoder_layers[-1].register_forward_hook(
        lambda _m, _a, out: states.append(last_layer_output(out)[:, -1, :])
    )
    try:
        emitted = loaded.generate(inputs, max_new_tokens=steps)
    finally:
        hook.remove()
    with torch.inference_mode():
        lens_top1 = torch.stack([logits_from_last_layer(loaded, h).argmax(-1) for h in states], dim=1)
    n = min(lens_top1.shape[1], emitted.shape[1])
    return bool(torch.equal(lens_top1[:, :n].cpu(), emitted[:, :n].cpu()))


def adapter_logits_diff(loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int) -> float:
    """Max abs difference between the last-layer lens and the logits, on a real image+prompt input."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    return check_adapter(loaded, dict(inputs))


CHECKS: dict[str, Check] = {
    "lens_equals_logits": adapter_logits_diff,
    "greedy_top1_is_emitted": greedy_top1_matches_emitted,
    **PLAN_CHECKS,
    **TRACE_CHECKS,
}


def verify_model(
    loaded: LoadedModel,
    image: Image.Image | None = None,
    prompt: str = "Describe this image.",
    steps: int = 4,
) -> VerifyReport:
    """Run every check in ``CHECKS``; failures are collected, not raised."""
    report = VerifyReport(loaded.name)
    if loaded.adapter.vision and image is None:
        image = Image.new("RGB", (64, 64), (200, 30, 30))
    for name, check in CHECKS.items():
        try:
            value = check(loaded, image, prompt, steps)
        except Exception as exc:  # a check that crashes is a failed check, reported by name
            report.results[name] = f"error: {type(exc).__name__}: {exc}"
            report.failures.append(name)
            continue
        report.results[name] = value
        if value is False:
            report.failures.append(name)
    return report
