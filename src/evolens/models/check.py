"""The load-time adapter check: the unembedding of the final-normed last layer must give the logits."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from evolens.errors import AdapterCheckError
from evolens.models.loaded import LoadedModel


def last_layer_output(output: Any) -> torch.Tensor:
    """A decoder layer's hidden-state output (B, T, d), whether it returns a tensor or a tuple."""
    return output[0] if isinstance(output, tuple | list) else output


def logits_from_last_layer(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """unembedding(final_norm(h)) in fp32, soft-capped where the family caps: (..., d) -> (..., V).

    The one implementation of the lens identity is ``evolens.lens.Unembed``; this is its normed logits.
    """
    return loaded.unembed.logits(hidden)


@torch.inference_mode()
def check_adapter(
    loaded: LoadedModel, inputs: dict[str, torch.Tensor] | None = None, atol: float = 1e-3
) -> float:
    """Run one forward pass and compare the adapter's lens at the last layer with the model's logits.

    Returns the max abs difference; raises ``AdapterCheckError`` when it exceeds ``atol`` in fp32, or 2% of
    the largest logit in half precision.
    """
    if inputs is None and loaded.adapter.vision:  # some VLMs (InstructBLIP) refuse a text-only forward
        image = Image.new("RGB", (64, 64), (200, 30, 30))
        inputs = dict(loaded.build_inputs(["Describe the picture."], [image]))
    if inputs is None:
        ids = loaded.tokenizer("The picture shows", return_tensors="pt")["input_ids"].to(loaded.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    captured: list[torch.Tensor] = []
    handle = loaded.decoder_layers[-1].register_forward_hook(
        lambda _m, _a, out: captured.append(last_layer_output(out))
    )
    try:
        logits = loaded.model(**inputs, use_cache=False).logits.float()
    finally:
        handle.remove()
    if not captured:
        raise AdapterCheckError(f"adapter '{loaded.adapter.family}': the last decoder layer never ran")
    lens = logits_from_last_layer(loaded, captured[-1])
    diff = (lens[..., -1, :] - logits[..., -1, :]).abs().max().item()
    tolerance = atol if loaded.dtype == torch.float32 else max(atol, 2e-2 * logits.abs().max().item())
    if not diff <= tolerance:
        raise AdapterCheckError(
            f"adapter '{loaded.adapter.family}' does not reproduce the logits of {loaded.name} "
            f"(max abs diff {diff:.3g}); its final_norm/unembedding paths are wrong"
        )
    return diff
