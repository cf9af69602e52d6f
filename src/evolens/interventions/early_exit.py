"""Early exit: stop at lens layer k, so the model's output is the normed lens of layer k.

Exiting at k is the plan that skips decoder layers k..L-1; the final norm and the unembedding still run,
so the next-token distribution is softmax(unembedding(final_norm(h_k))), the lens evolens traces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import BatchFeature

from evolens.interventions.plan import LayerPlan
from evolens.interventions.skipping import skip_layers
from evolens.models.capture import LayerCapture
from evolens.models.loaded import LoadedModel


@contextmanager
def early_exit(loaded: LoadedModel, lens_layer: int) -> Iterator[LayerPlan]:
    """Within the block the model exits at lens layer ``lens_layer`` (1..L; L = the full model)."""
    with skip_layers(loaded, LayerPlan.early_exit(loaded.n_layers, lens_layer)) as plan:
        yield plan


@torch.inference_mode()
def lens_logits_at_layer(loaded: LoadedModel, inputs: BatchFeature, lens_layer: int) -> torch.Tensor:
    """The normed lens of lens layer ``lens_layer`` (0..L) at the last prompt position, from a full forward.

    Returns (B, V) fp32 logits: unembedding(final_norm(h)), where h is the input of decoder layer 0 for
    lens layer 0, else the output of decoder layer ``lens_layer - 1``. The independent reference for
    ``early_exit``.
    """
    with LayerCapture(loaded, [lens_layer]) as capture:
        loaded.model(**inputs, use_cache=False)
        state = capture.last()[:, 0]
    return loaded.unembed.logits(state)
