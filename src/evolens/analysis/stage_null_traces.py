"""What a stage boundary must beat across traces: the same tokens scored without the image, with a blank or
with another image (``evolens score --from TRACE --condition ...``).

At a boundary b, g_real(b) and g_null(b) are the costs the boundary saves on each trace's mean curve, with
the segments the data's segmentation gives it and both curves standardized as the data
(``segmentation.boundary_gains``). The boundary's excess R(b) = (g_real - g_null) / (g_real + g_null), in
[-1, 1], is the share of its change that the image adds: 1 when the null trace has no change there, 0
when it has the same. If the image changed nothing, a trace and its null would be exchangeable image by
image, so the test randomizes which is which: when the null holds the data's samples (paired), each image's
real and null curves swap places with probability 1/2; otherwise the images of both traces are pooled and
dealt out again in the traces' sizes. On each of P randomized pairs the whole rule runs again (the
segmentation under the data's penalty, then R at every boundary it finds), and T* is the largest R over
those boundaries and over the conditions (-1 when it finds none): selection included, family-wise over the
boundaries and the conditions. q is the ``level`` quantile of T* (the ⌈level (P+1)⌉-th smallest), and a
boundary beats a null trace when R(b) > max(q, 0), i.e. g_real(b) > g_null(b) (1 + q) / (1 - q), its
threshold. With few paired images every swap pattern but the data's is used, each once (2^n - 1 of them);
with fewer than 5 images q is then the largest R, and no boundary can beat the null trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evolens.analysis.segmentation import (
    boundary_gains,
    merge_gains,
    optimal_segmentations,
    segment_costs,
)
from evolens.analysis.stage_nulls import binary_patterns, null_quantile
from evolens.analysis.stage_signal import LayerSignal, Standardizer


@dataclass(frozen=True)
class NullDraws:
    """One null trace's curves and the randomized replicates of the pair, all standardized as the data.

    Attributes:
        z_null: (n, d_used) the null trace's mean curve.
        rep_real, rep_null: (P, n, d_used) the pair's mean curves after each randomization.
        paired: whether the null holds the data's samples (images swapped within pairs).
    """

    z_null: np.ndarray
    rep_real: np.ndarray
    rep_null: np.ndarray
    paired: bool


def _pair_sums(real: LayerSignal, null: LayerSignal) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image of ``real``: (real sums, real counts, null sums, null counts); the null's samples are the
    real's, in the same order."""
    images = real.by_image()
    null_sums = np.zeros_like(images.sums)
    np.add.at(null_sums, real.images, null.sums)
    null_counts = np.bincount(real.images, weights=null.counts, minlength=real.n_images)
    return images.sums, images.counts, null_sums, null_counts


def draw_null(
    real: LayerSignal, null: LayerSignal, standardize: Standardizer, n_perm: int, rng: np.random.Generator
) -> NullDraws:
    """The randomized replicates of the pair (``real``, ``null``) (module doc)."""
    paired = null.sample_ids == real.sample_ids
    if paired:
        real_sums, real_counts, null_sums, null_counts = _pair_sums(real, null)
        swap = binary_patterns(real.n_images, n_perm, rng, first_fixed=False)
        moved = np.tensordot(swap, null_sums - real_sums, axes=(1, 0))
        moved_counts = swap @ (null_counts - real_counts)
        rep_real = (real_sums.sum(0) + moved) / (real_counts.sum() + moved_counts)[:, None, None]
        rep_null = (null_sums.sum(0) - moved) / (null_counts.sum() - moved_counts)[:, None, None]
    else:
        a, b = real.by_image(), null.by_image()
        pooled, counts = np.concatenate([a.sums, b.sums]), np.concatenate([a.counts, b.counts])
        order = np.argsort(rng.random((n_perm, len(counts))), axis=1)
        to_real = np.zeros((n_perm, len(counts)))
        np.put_along_axis(to_real, order[:, : a.n_images], 1.0, axis=1)
        to_null = 1.0 - to_real
        rep_real = np.tensordot(to_real, pooled, axes=(1, 0)) / (to_real @ counts)[:, None, None]
        rep_null = np.tensordot(to_null, pooled, axes=(1, 0)) / (to_null @ counts)[:, None, None]
    return NullDraws(
        z_null=standardize.apply(null.mean()),
        rep_real=standardize.apply(rep_real),
        rep_null=standardize.apply(rep_null),
        paired=paired,
    )


def draw_nulls(
    real: LayerSignal,
    nulls: Mapping[str, LayerSignal],
    standardize: Standardizer,
    n_perm: int,
    seed: int,
) -> dict[str, NullDraws]:
    """``draw_null`` for every condition, in condition order, from one seeded generator."""
    rng = np.random.default_rng(seed)
    return {c: draw_null(real, nulls[c], standardize, n_perm, rng) for c in sorted(nulls)}


def excess(real: np.ndarray, null: np.ndarray) -> np.ndarray:
    """R = (g_real - g_null) / (g_real + g_null), 0 where both are 0."""
    total = real + null
    return np.divide(real - null, total, out=np.zeros_like(total), where=total > 0)


def excess_quantile(draws: Mapping[str, NullDraws], penalty: float, min_size: int, level: float) -> float:
    """q: the ``level`` quantile of T*, the largest excess R at the boundaries the rule finds on the
    randomized pairs (module doc)."""
    if not draws:
        return 0.0
    largest = np.full(len(next(iter(draws.values())).rep_real), -1.0)
    for draw in draws.values():
        found = optimal_segmentations(draw.rep_real, penalty, min_size)
        real_costs = segment_costs(draw.rep_real, min_size)
        null_costs = segment_costs(draw.rep_null, min_size)
        for index, boundaries in enumerate(found):
            if boundaries:
                ratio = excess(
                    merge_gains(real_costs[index], boundaries), merge_gains(null_costs[index], boundaries)
                )
                largest[index] = max(largest[index], float(ratio.max()))
    return null_quantile(largest, level)


@dataclass(frozen=True)
class NullTraceTest:
    """The test of boundaries against the null traces.

    Attributes:
        boundaries: the positions tested.
        real: (K,) g_real at each.
        null: condition -> (K,) g_null at each.
        threshold: condition -> (K,) g_null (1 + q) / (1 - q) with q = max(critical, 0): what g_real must
            exceed (inf when q >= 1).
        critical: q of ``excess_quantile``.
    """

    boundaries: tuple[int, ...]
    real: np.ndarray
    null: dict[str, np.ndarray]
    threshold: dict[str, np.ndarray]
    critical: float

    def beats(self, condition: str) -> np.ndarray:
        """(K,) whether each boundary's change beats ``condition``'s threshold."""
        return self.real > self.threshold[condition]

    def record(self, k: int) -> dict[str, dict[str, float]]:
        """Boundary ``k`` against each condition: its excess R, q, the null's own change there, and the
        threshold its change had to exceed."""
        return {
            condition: {
                "excess": float(excess(self.real[k : k + 1], null[k : k + 1])[0]),
                "critical": self.critical,
                "null_change": float(null[k]),
                "threshold": float(self.threshold[condition][k]),
            }
            for condition, null in self.null.items()
        }


def compare_with_nulls(
    z_real: np.ndarray,
    draws: Mapping[str, NullDraws],
    boundaries: Sequence[int],
    min_size: int,
    critical: float,
) -> NullTraceTest:
    """Test ``boundaries`` of the data's curve ``z_real`` (n, d_used) against every null in ``draws`` with
    the margin ``critical`` (q of ``excess_quantile``)."""
    points = list(boundaries)
    real = boundary_gains(z_real[None], points, min_size)[0, points]
    nulls = {c: boundary_gains(d.z_null[None], points, min_size)[0, points] for c, d in draws.items()}
    margin = max(critical, 0.0)
    factor = (1 + margin) / (1 - margin) if margin < 1 else np.inf
    threshold = {c: np.where(values > 0, values * factor, 0.0) for c, values in nulls.items()}
    return NullTraceTest(tuple(points), real, nulls, threshold, critical)
