"""Interventions on the decoder: layer skipping, early exit and layer-mixing decoding.

``with skip_layers(loaded, {12, 13}): loaded.generate(...)`` runs the model without those decoder layers
(the residual passes through); ``early_exit(loaded, k)`` makes the normed lens of layer k the output;
``LayerMixProcessor`` mixes an earlier layer's distribution into the final one (DeCo-style decoding).
"""

from evolens.interventions.early_exit import early_exit, lens_logits_at_layer
from evolens.interventions.plan import LayerPlan, format_layers
from evolens.interventions.skipping import generate_with_plan, greedy_without_cache, skip_layers

__all__ = [
    "LayerPlan",
    "early_exit",
    "format_layers",
    "generate_with_plan",
    "greedy_without_cache",
    "lens_logits_at_layer",
    "skip_layers",
]
