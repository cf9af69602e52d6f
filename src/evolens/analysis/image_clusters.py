"""Intervals that match the design: images are the sampled unit, and a claim about a whole curve needs a
band that holds for the whole curve.

A trace's samples are image x prompt pairs. The tokens of one sample are correlated, and so are the samples
of one image (its prompts). A replicate of the **two-stage cluster bootstrap** draws n_images images with
replacement and then, within each drawn image, as many of its samples as it has, with replacement; each
drawn sample brings all its tokens, and the replicate's statistic is the token-weighted mean of what was
drawn (draws from ``numpy.random.default_rng(seed)``, so results are reproducible bit for bit).

The **simultaneous band** over layers is the max-t band: with se_l the replicates' standard deviation at
layer l and c the ``level`` quantile over replicates of max_l |replicate_l - estimate_l| / se_l, the band
estimate_l ± c·se_l covers the whole curve in ``level`` of the replicates (a pointwise band covers each
layer alone, and so covers the curve less often). Layers where every replicate is the same (se = 0, e.g. a
divergence to the last layer at the last layer) have a band of width 0 and do not enter the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evolens.analysis.bootstrap import DEFAULT_LEVEL, simultaneous_band


def image_ids(samples: pd.DataFrame) -> np.ndarray:
    """(n_samples,) what identifies each sample's image: its file's SHA-256 when recorded, else its path,
    else (a text-only sample) the sample id itself."""
    ids = samples["sample_id"].astype(str).to_numpy(dtype=object)
    for column in ("image", "image_sha256"):  # the later column wins where it is known
        if column in samples:
            values = samples[column].to_numpy(dtype=object)
            known = pd.notna(values)
            ids = np.where(known, [f"{column}:{v}" for v in values], ids)
    return ids


def two_stage_weights(images: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_samples) how many times each sample is drawn in each replicate: images first, then the
    samples of each drawn image (module doc). ``images``: (n_samples,) the image of each sample."""
    _, image_of = np.unique(images, return_inverse=True)
    n_images = int(image_of.max()) + 1
    rng = np.random.default_rng(seed)
    image_draws = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot)
    weights = np.zeros((n_boot, len(images)))
    for image in range(n_images):
        members = np.flatnonzero(image_of == image)
        size = len(members)
        weights[:, members] = rng.multinomial(image_draws[:, image] * size, np.full(size, 1.0 / size))
    return weights


@dataclass(frozen=True)
class Band:
    """A per-layer mean with its simultaneous band; arrays of shape (n_layers_or_transitions,).

    Attributes:
        critical: c, the max-t quantile (the band is ``mean ± c·se``).
        n_images, n_samples, n_tokens: what the mean is over.
    """

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    critical: float
    n_images: int
    n_samples: int
    n_tokens: int


def image_bootstrap(
    values: np.ndarray,
    sample_index: np.ndarray,
    images: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = DEFAULT_LEVEL,
) -> Band:
    """Token-weighted mean of ``values`` (n_tokens, K) with its simultaneous band from the two-stage
    bootstrap (module doc).

    Args:
        sample_index: (n_tokens,) each token's sample, in 0..n_samples-1.
        images: (n_samples,) each sample's image (e.g. ``image_ids``).
    """
    n_samples = len(images)
    sums = np.zeros((n_samples, values.shape[1]))
    np.add.at(sums, sample_index, values)
    counts = np.bincount(sample_index, minlength=n_samples).astype(np.float64)
    present = counts > 0
    sums, counts, images = sums[present], counts[present], images[present]
    weights = two_stage_weights(images, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = (weights @ sums) / (weights @ counts)[:, None]
    estimate = values.mean(0)
    low, high, critical = simultaneous_band(estimate, replicates, level)
    return Band(estimate, low, high, critical, len(np.unique(images)), int(present.sum()), len(values))
