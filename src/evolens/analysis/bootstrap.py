"""Cluster bootstrap over samples: tokens of one generation are correlated, so whole samples are resampled.

A replicate draws n_samples samples with replacement (seeded ``numpy.random.default_rng``); each drawn
sample contributes all its tokens. Means are token-weighted (the pooled mean of the drawn tokens).
Intervals are percentile intervals of the replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class MeanCI:
    """A per-layer mean with its bootstrap interval; every array has shape (n_layers_or_transitions,)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_tokens: int

    def to_dict(self) -> dict:
        return {
            "mean": _floats(self.mean),
            "low": _floats(self.low),
            "high": _floats(self.high),
            "n_tokens": self.n_tokens,
        }


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]


def replicate_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) how many times each cluster is drawn in each replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(np.float64)


def cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (n_clusters, ...) of ``values`` (n_tokens, ...) and token counts (n_clusters,)."""
    sums = np.zeros((n_clusters, *values.shape[1:]))
    np.add.at(sums, clusters, values)
    return sums, np.bincount(clusters, minlength=n_clusters).astype(np.float64)


def replicate_means(
    values: np.ndarray, clusters: np.ndarray, n_clusters: int, counts: np.ndarray
) -> np.ndarray:
    """(n_boot, ...) token-weighted means of ``values`` (n_tokens, ...) in each replicate.

    ``counts`` comes from ``replicate_counts``; a replicate that drew no token gives NaN.
    """
    sums, sizes = cluster_sums(values, clusters, n_clusters)
    totals = np.tensordot(counts, sums, axes=(1, 0))
    n = counts @ sizes
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / n.reshape(-1, *([1] * (values.ndim - 1)))


def bootstrap_mean(
    values: np.ndarray,
    clusters: np.ndarray,
    n_clusters: int,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> MeanCI:
    """Mean over tokens of ``values`` (n_tokens, n) with a cluster-bootstrap percentile interval.

    Args:
        clusters: (n_tokens,) the sample index of each token, in 0..n_clusters-1.
    """
    if len(values) == 0:
        nan = np.full(values.shape[1:], np.nan)
        return MeanCI(nan, nan, nan, 0)
    counts = replicate_counts(n_clusters, n_boot, seed)
    replicates = replicate_means(values, clusters, n_clusters, counts)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    return MeanCI(values.mean(0), low, high, len(values))


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The percentile interval of 1-D replicates (NaNs, e.g. "no mutation found", are left out)."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
