"""The load-time adapter check, and the result type every adapter check returns.

The check: one forward pass, and the unembedding of the final-normed last decoder layer (read through
``LayerCapture``) must give the model's own logits. ``evolens.verify`` runs it with the other checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from evolens.errors import AdapterCheckError
from evolens.models.capture import LayerCapture

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one adapter check.

    Attributes:
        passed: whether the invariant holds.
        value: the measured number behind it (a max abs difference, say), None for yes/no checks.
        detail: why it failed (empty when it passed).
    """

    passed: bool
    value: float | None = None
    detail: str = ""

    @classmethod
    def of(cls, holds: bool, detail: str = "") -> CheckResult:
        """A yes/no check's result."""
        return cls(holds, None, "" if holds else detail)

    @classmethod
    def within(cls, value: float, tolerance: float, what: str = "max abs diff") -> CheckResult:
        """Passed when ``value <= tolerance`` (NaN fails)."""
        holds = value <= tolerance
        return cls(holds, value, "" if holds else f"{what} {value:.3g} > tolerance {tolerance:.3g}")


def default_inputs(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """A small input the model accepts: a red square and a prompt for VLMs (some, like InstructBLIP,
    refuse a text-only forward), a short text otherwise."""
    if loaded.adapter.vision:
        image = Image.new("RGB", (64, 64), (200, 30, 30))
        return dict(loaded.build_inputs(["Describe the picture."], [image]))
    ids = loaded.tokenizer("The picture shows", return_tensors="pt")["input_ids"].to(loaded.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.inference_mode()
def check_adapter(
    loaded: LoadedModel, inputs: dict[str, torch.Tensor] | None = None, atol: float = 1e-3
) -> float:
    """Run one forward pass and compare the adapter's lens at the last layer with the model's logits.

    Returns the max abs difference at the last position; raises ``AdapterCheckError`` when it exceeds
    ``atol`` in fp32, or 2% of the largest logit in half precision.
    """
    inputs = default_inputs(loaded) if inputs is None else inputs
    with LayerCapture(loaded, [loaded.n_layers]) as capture:
        logits = loaded.model(**inputs, use_cache=False).logits[..., -1, :].float()
        try:
            last_state = capture.last()[:, 0]
        except RuntimeError as exc:
            raise AdapterCheckError(
                f"adapter '{loaded.adapter.family}': the last decoder layer never ran"
            ) from exc
    lens = loaded.unembed.logits(last_state)
    diff = (lens - logits.to(lens.device)).abs().max().item()
    tolerance = atol if loaded.dtype == torch.float32 else max(atol, 2e-2 * logits.abs().max().item())
    if not diff <= tolerance:
        raise AdapterCheckError(
            f"adapter '{loaded.adapter.family}' does not reproduce the logits of {loaded.name} "
            f"(max abs diff {diff:.3g}); its final_norm/unembedding paths are wrong"
        )
    return diff
