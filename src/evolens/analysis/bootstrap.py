"""Cluster bootstrap that matches the design: images are the sampled unit, then the prompts asked of them.

A trace's samples are image x prompt pairs; the tokens of one sample are correlated, and so are the samples
of one image. A replicate of the **two-stage cluster bootstrap** draws n_images images with replacement and,
within each drawn image, as many of its samples as it has, with replacement (a text-only sample is its own
image); each drawn sample contributes all its tokens, and means are token-weighted (the pooled mean of the
drawn tokens). Draws come from ``numpy.random.default_rng(seed)``: stage one is the same multinomial draw as
the one-stage sample bootstrap, and stage two only draws for images with several samples, so a trace whose
samples all have distinct images gets the sample bootstrap's replicates bit for bit.

Pointwise intervals are percentile intervals of the replicates. The **simultaneous band** over layers is the
max-t band: with se_l the replicates' standard deviation at layer l and c the ``level`` quantile over
replicates of max_l |replicate_l - estimate_l| / se_l, estimate_l ± c·se_l covers the whole curve in
``level`` of the replicates (a pointwise band covers each layer alone, and the whole curve less often).
Layers where every replicate is the same (se = 0) get a band of width 0 and do not enter the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95
RESAMPLED = "images, then samples (prompts) within each image"
"""What a replicate resamples (summary.json's ``resampled``)."""


@dataclass(frozen=True)
class MeanCI:
    """A per-layer mean with its bootstrap intervals; every array has shape (n_layers_or_transitions,).

    Attributes:
        low, high: the pointwise percentile interval.
        band_low, band_high: the simultaneous (max-t) band over all layers; None when not computed.
        band_critical: c of the max-t band (the band is mean ± c·se).
    """

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_tokens: int
    band_low: np.ndarray | None = None
    band_high: np.ndarray | None = None
    band_critical: float | None = None

    def to_dict(self) -> dict:
        values: dict = {
            "mean": _floats(self.mean),
            "low": _floats(self.low),
            "high": _floats(self.high),
            "n_tokens": self.n_tokens,
        }
        if self.band_low is not None and self.band_high is not None:
            values |= {
                "band_low": _floats(self.band_low),
                "band_high": _floats(self.band_high),
                "band_critical": None if self.band_critical is None else round(self.band_critical, 4),
            }
        return values


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]


def image_clusters(samples: pd.DataFrame) -> np.ndarray:
    """(n_samples,) the image cluster of each sample, numbered 0.. in order of first appearance.

    An image is identified by its file's SHA-256 when recorded, else its path; a sample without an image
    (text only) is its own cluster.
    """
    keys = samples["sample_id"].astype(str).map(lambda s: f"sample:{s}").to_numpy(dtype=object)
    for column in ("image", "image_sha256"):  # the later column wins where it is known
        if column in samples:
            values = samples[column].to_numpy(dtype=object)
            known = pd.notna(values)
            keys = np.where(known, [f"{column}:{v}" for v in values], keys)
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber by first appearance
    return order[codes].astype(np.int64)


def replicate_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) how many times each cluster is drawn in each replicate (one stage)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(np.float64)


def two_stage_counts(images: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_samples) how many times each sample is drawn: images first, then the samples of each
    drawn image (module doc). ``images``: (n_samples,) image cluster of each sample, 0..n_images-1 (e.g.
    ``image_clusters``); with every image distinct this equals ``replicate_counts(n_samples, ...)``."""
    images = np.asarray(images, dtype=np.int64)
    n_images = int(images.max()) + 1 if len(images) else 0
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot)
    counts = np.zeros((n_boot, len(images)))
    for image in range(n_images):
        members = np.flatnonzero(images == image)
        if len(members) == 1:
            counts[:, members[0]] = draws[:, image]
        else:
            size = len(members)
            counts[:, members] = rng.multinomial(draws[:, image] * size, np.full(size, 1.0 / size))
    return counts


def cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (n_clusters, ...) of ``values`` (n_tokens, ...) and token counts (n_clusters,)."""
    sums = np.zeros((n_clusters, *values.shape[1:]))
    np.add.at(sums, clusters, values)
    return sums, np.bincount(clusters, minlength=n_clusters).astype(np.float64)


def replicate_means(
    values: np.ndarray, clusters: np.ndarray, n_clusters: int, counts: np.ndarray
) -> np.ndarray:
    """(n_boot, ...) token-weighted means of ``values`` (n_tokens, ...) in each replicate.

    ``counts`` (n_boot, n_clusters) comes from ``replicate_counts`` or ``two_stage_counts``; a replicate
    that drew no token gives NaN.
    """
    sums, sizes = cluster_sums(values, clusters, n_clusters)
    totals = np.tensordot(counts, sums, axes=(1, 0))
    n = counts @ sizes
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / n.reshape(-1, *([1] * (values.ndim - 1)))


def simultaneous_band(
    estimate: np.ndarray, replicates: np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[np.ndarray, np.ndarray, float]:
    """(low, high, c): the max-t band of ``estimate`` (K,) from bootstrap ``replicates`` (n_boot, K)."""
    se = np.nanstd(replicates, axis=0, ddof=1) if len(replicates) > 1 else np.zeros_like(estimate)
    varying = np.isfinite(se) & (se > 1e-12 * np.maximum(1.0, np.abs(estimate)))
    if not varying.any():
        return estimate.copy(), estimate.copy(), 0.0
    deviations = np.abs(replicates[:, varying] - estimate[varying]) / se[varying]
    critical = float(np.nanquantile(np.nanmax(deviations, axis=1), level))
    half = critical * np.where(varying, se, 0.0)
    return estimate - half, estimate + half, critical


def bootstrap_mean(
    values: np.ndarray,
    clusters: np.ndarray,
    n_clusters: int,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    images: np.ndarray | None = None,
) -> MeanCI:
    """Mean over tokens of ``values`` (n_tokens, n) with pointwise percentile intervals and a simultaneous
    band from the cluster bootstrap.

    Args:
        clusters: (n_tokens,) the sample index of each token, in 0..n_clusters-1.
        images: (n_clusters,) the image cluster of each sample (``image_clusters``): two-stage resampling;
            None = every sample its own image (the one-stage sample bootstrap).
    """
    if len(values) == 0:
        nan = np.full(values.shape[1:], np.nan)
        return MeanCI(nan, nan, nan, 0)
    if images is None:
        counts = replicate_counts(n_clusters, n_boot, seed)
    else:
        counts = two_stage_counts(images, n_boot, seed)
    replicates = replicate_means(values, clusters, n_clusters, counts)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail], axis=0)
    mean = values.mean(0)
    band_low, band_high, critical = simultaneous_band(mean, replicates, level)
    return MeanCI(mean, low, high, len(values), band_low, band_high, critical)


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The percentile interval of 1-D replicates (NaNs, e.g. "no mutation found", are left out)."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
