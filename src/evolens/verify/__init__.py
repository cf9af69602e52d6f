"""Invariant checks any supported model must pass; the family tests and ``evolens verify`` both use them.

1. inputs build from an image (for VLMs) and a prompt;
2. the lens at the last layer equals the model's logits (``check_adapter``);
3. with greedy decoding, the last layer's top-1 under the lens is the emitted token at every step;
4. the trace engine records exactly that (``evolens.tracing.check``), and the layer plans of the
   interventions keep their invariants (``evolens.interventions.checks``).

This module sits on top of models, tracing and interventions: it is the one place that gathers their checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from evolens.interventions.checks import PLAN_CHECKS
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.models.check import CheckResult, check_adapter
from evolens.models.loaded import LoadedModel
from evolens.tracing.check import TRACE_CHECKS


@dataclass
class VerifyReport:
    """Outcome of ``verify_model``: one ``CheckResult`` per check, by name."""

    model: str
    results: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Names of the checks that failed."""
        return [name for name, result in self.results.items() if not result.passed]

    @property
    def ok(self) -> bool:
        return not self.failures


Check = Callable[[LoadedModel, "Image.Image | None", str, int], CheckResult]


def greedy_top1_matches_emitted(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """Generate greedily; at each step the lens top-1 of the last layer must be the emitted token."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    top1: list[torch.Tensor] = []
    with LayerCapture(loaded, [loaded.n_layers]) as capture:

        def read_step(_tokens: torch.Tensor) -> None:
            top1.append(loaded.unembed.logits(capture.pop()[:, 0]).argmax(-1).cpu())

        emitted = loaded.generate(inputs, max_new_tokens=steps, streamer=TokenStreamer(read_step)).cpu()
    lens_top1 = torch.stack(top1, dim=1)
    n = min(lens_top1.shape[1], emitted.shape[1])
    return CheckResult.of(
        bool(torch.equal(lens_top1[:, :n], emitted[:, :n])),
        f"lens top-1 {lens_top1[:, :n].tolist()} != emitted {emitted[:, :n].tolist()}",
    )


def adapter_logits_diff(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """Max abs difference between the last-layer lens and the logits, on a real image+prompt input."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    return CheckResult(True, check_adapter(loaded, dict(inputs)))


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
            report.results[name] = check(loaded, image, prompt, steps)
        except Exception as exc:  # a check that crashes is a failed check, reported by name
            report.results[name] = CheckResult(False, None, f"error: {type(exc).__name__}: {exc}")
    return report
