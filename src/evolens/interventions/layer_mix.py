"""Layer-mix decoding in the spirit of DeCo (Wang et al., 2024): let an earlier layer correct the last one.

At every step, with z_L the model's final logits and z_l = unembedding(final_norm(h_l)) the normed lens of
an earlier lens layer l (captured by a forward hook on decoder layer l-1):

    C    = the top_k tokens of softmax(z_L)                      (candidates the model already considers)
    a    = argmax over l in ``layers`` of max_{c in C} softmax(z_l)_c     (anchor layer; one layer = fixed)
    w    = max_{c in C} softmax(z_a)_c                            (how sure the anchor is of any candidate)
    z'_c = z_L,c + alpha * w * z_a,c   for c in C,   -inf otherwise

and decoding continues from z' (greedy = argmax z'). alpha = 0 gives back plain greedy decoding. DeCo's
motivation: earlier layers still "see" the image evidence that the last layers' language prior overrides.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import BatchFeature, LogitsProcessor, LogitsProcessorList

from evolens.errors import UsageError
from evolens.models.capture import LayerCapture
from evolens.models.loaded import LoadedModel


class LayerMixProcessor(LogitsProcessor):
    """Mixes the anchor layer's lens logits into the final scores (formula in the module docstring).

    ``capture`` (set by ``layer_mix``) holds, per forward pass, the last-position states of ``layers``.
    """

    def __init__(self, loaded: LoadedModel, layers: Sequence[int], alpha: float, top_k: int = 10) -> None:
        if not layers or not all(1 <= layer <= loaded.n_layers - 1 for layer in layers):
            raise UsageError(f"layer-mix layers must be in 1..{loaded.n_layers - 1}, got {list(layers)}")
        if alpha < 0 or top_k < 1:
            raise UsageError(f"layer mix needs alpha >= 0 and top_k >= 1 (got alpha={alpha}, top_k={top_k})")
        self.loaded, self.layers, self.alpha, self.top_k = loaded, tuple(layers), alpha, top_k
        self.capture: LayerCapture | None = None
        self.anchors: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """(B, V) scores -> (B, V) mixed scores, -inf outside each row's candidates."""
        candidates = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).indices  # (B, K)
        if self.capture is None:
            raise RuntimeError("LayerMixProcessor runs inside layer_mix(), which captures the layers")
        lens = self.loaded.unembed.logits(self.capture.last())  # (B, n_layers, V)
        probs = lens.softmax(-1).gather(-1, candidates[:, None, :].expand(-1, len(self.layers), -1))
        weight, best = probs.max(-1).values.max(-1)  # (B,), index into self.layers
        self.anchors.append(torch.tensor(self.layers, device=best.device)[best])
        anchor = lens[torch.arange(lens.shape[0], device=lens.device), best]  # (B, V)
        mixed = scores.float() + self.alpha * weight[:, None] * anchor
        out = torch.full_like(mixed, float("-inf"))
        out.scatter_(-1, candidates, mixed.gather(-1, candidates))
        return out.to(scores.dtype)  # type: ignore[return-value]  # FloatTensor is a legacy alias


@contextmanager
def layer_mix(
    loaded: LoadedModel, layers: Sequence[int], alpha: float, top_k: int = 10
) -> Iterator[LayerMixProcessor]:
    """Hooks that feed a ``LayerMixProcessor``; pass it to ``generate`` as ``logits_processor``."""
    processor = LayerMixProcessor(loaded, layers, alpha, top_k)
    with LayerCapture(loaded, processor.layers) as capture:
        processor.capture = capture
        try:
            yield processor
        finally:
            processor.capture = None


def generate_with_layer_mix(
    loaded: LoadedModel,
    inputs: BatchFeature,
    layers: Sequence[int],
    alpha: float,
    top_k: int = 10,
    **generation: Any,
) -> torch.Tensor:
    """Greedy generation with layer-mix decoding: new token ids (B, T_new)."""
    with layer_mix(loaded, layers, alpha, top_k) as processor:
        return loaded.generate(inputs, logits_processor=LogitsProcessorList([processor]), **generation)
