"""Bootstrap intervals of the found stages: how often each boundary and each named stage comes back.

A replicate redraws images, then the prompts of each drawn image (``bootstrap.two_stage_counts``), takes the
token-weighted mean curve of what it drew, standardizes it as the data and segments it exactly with the
data's penalty β (``segmentation.optimal_segmentations``). The null-trace tests are not rerun per
replicate; instead a replicate's boundary within ``match_layers`` layers of a candidate that the null traces
removed from the data (and of no kept boundary) is removed too, so the replicates answer the same question
as the data. A replicate finds a boundary when it has one within ``match_layers`` layers of it.

Every replicate is counted: ``found_share`` is the share of all replicates that found the boundary (or the
named stage), and ``interval`` is the ``level`` percentile interval of its layer over all replicates with
"not found" ranked after every layer, so when more than (1 - level)/2 of them missed it the upper end is
None: "not found" lies inside the interval. ``interval_where_found`` is the same over the replicates that
found it. Named stages are found the same way, by naming each replicate's segments with the data's rule
(``stage_names``): the critical layer is where stabilization starts, the mutation layer where mutation
starts. ``n_boundaries`` gives the share of replicates with each number of boundaries: whether the number
of stages itself is stable.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from evolens.analysis.bootstrap import RESAMPLED, two_stage_counts
from evolens.analysis.segmentation import optimal_segmentations
from evolens.analysis.stage_names import name_segments
from evolens.analysis.stage_search import ScopeSearch, segment_change, spans_of


@dataclass(frozen=True)
class LayerInterval:
    """Where a boundary or stage start lies over the replicates (module doc)."""

    found_share: float
    low: int | None
    high: int | None
    low_where_found: int | None
    high_where_found: int | None

    def to_dict(self) -> dict:
        return {
            "found_share": round(self.found_share, 4),
            "interval": [self.low, self.high],
            "interval_where_found": [self.low_where_found, self.high_where_found],
        }


def layer_interval(values: Sequence[int | None], level: float) -> LayerInterval:
    """The interval of layers ``values`` (None = not found in that replicate), not found counted."""
    found = sorted(v for v in values if v is not None)
    count = len(values)
    if count == 0:
        return LayerInterval(0.0, None, None, None, None)
    tail = (1 - level) / 2

    def order_statistic(ordered: Sequence[float], share: float) -> int | None:
        if not ordered:
            return None
        value = ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]
        return None if math.isinf(value) else int(value)

    everything = [float(v) for v in found] + [math.inf] * (count - len(found))
    return LayerInterval(
        found_share=len(found) / count,
        low=order_statistic(everything, tail),
        high=order_statistic(everything, 1 - tail),
        low_where_found=order_statistic(found, tail),
        high_where_found=order_statistic(found, 1 - tail),
    )


def nearest(layers: Sequence[int], target: int, within: int) -> int | None:
    """The layer of ``layers`` nearest ``target`` if it is within ``within`` layers, else None."""
    close = [layer for layer in layers if abs(layer - target) <= within]
    return min(close, key=lambda layer: (abs(layer - target), layer)) if close else None


def search_intervals(result: ScopeSearch, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """The intervals of ``result``'s boundaries and named stages (module doc), JSON-ready."""
    signal, config = result.signal, result.config
    weights = two_stage_counts(signal.images, n_boot, seed)
    replicates = result.standardize.apply(signal.replicate_means(weights))
    if math.isfinite(result.penalty.value) and replicates.shape[2]:
        segmentations = optimal_segmentations(replicates, result.penalty.value, config.min_size)
    else:
        segmentations = [()] * n_boot
    n_layers = int(signal.layers[-1])
    found_layers, critical, mutation, fits = [], [], [], 0
    kept = [b.layer for b in result.boundaries]
    removed = [r.layer for r in result.rejected]
    for replicate, found in zip(replicates, segmentations, strict=True):
        positions = tuple(
            p
            for p in found
            if nearest(kept, int(signal.layers[p]), config.match_layers) is not None
            or nearest(removed, int(signal.layers[p]), config.match_layers) is None
        )
        layers = [int(signal.layers[p]) for p in positions]
        found_layers.append(layers)
        spans = spans_of(positions, signal.layers)
        naming = name_segments(
            spans,
            segment_change(replicate, positions),
            n_layers,
            config.mutation_min_depth,
        )
        starts: dict[str, int] = {}
        for span, name in zip(spans, naming.names, strict=True):
            if name:
                starts.setdefault(name, span[0])
        critical.append(starts.get("stabilization"))
        mutation.append(starts.get("mutation"))
        fits += naming.fits
    counts = Counter(len(layers) for layers in found_layers)
    return {
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
        "resampled": RESAMPLED,
        "match_layers": config.match_layers,
        "boundaries": [
            layer_interval(
                [nearest(layers, b.layer, config.match_layers) for layers in found_layers], level
            ).to_dict()
            for b in result.boundaries
        ],
        "critical_layer": layer_interval(critical, level).to_dict(),
        "mutation_layer": layer_interval(mutation, level).to_dict(),
        "n_boundaries": {str(k): round(counts[k] / n_boot, 4) for k in sorted(counts)},
        "story_fits_share": round(fits / n_boot, 4),
    }
