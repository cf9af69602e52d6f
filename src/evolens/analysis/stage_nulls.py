"""What a stage boundary must beat within its own trace: the penalty that two nulls set.

**The penalty (family-wise over every layer and every number of boundaries).** G(z) = max_K (C_0 - C_K)/K
is the smallest penalty under which the exact segmentation of z has no boundary
(``segmentation.no_boundary_penalty``). It is computed, with the curve standardized exactly as the data's,
on replicates of two nulls that keep everything but the layer structure:

- *layer permutation*: every sample's curve has its layers shuffled (one permutation per sample, the same
  for its features), and the replicate is the token-weighted mean of the shuffled curves;
- *sampling noise*: each image's token sums, with the image's own mean over layers removed, get a random
  sign. With no layer structure (a flat mean curve) those centred sums are noise alone, with the noise's own
  correlation across layers, which a permutation destroys; the statistic depends on the data only through
  them (costs ignore a feature's level), so for noise symmetric about 0 this null is exact.

The penalty β is the larger of the two nulls' ``level`` quantiles of G (the ⌈level (P+1)⌉-th smallest of P
replicates: a valid permutation-test quantile). With few images every sign pattern is used, each once (the
data's excepted, and mirror patterns counted once: they give the same G): with n images there are 2^(n-1) - 1
of them, so fewer than 6 images can never beat this null at the 95% level, and it says so. So on a curve with
no layer structure the segmentation finds any boundary at all with probability at most 1 - level, and every
boundary it keeps saves more than β.

The null traces (the same tokens under another input condition) are ``stage_null_traces``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evolens.analysis.segmentation import no_boundary_penalty
from evolens.analysis.stage_signal import LayerSignal, Standardizer, standardize_datasets

MAX_CHUNK = 4_000_000
"""At most this many floats per chunk of permuted curves (n_perm x n_samples x n x d)."""


def null_quantile(values: np.ndarray, level: float) -> float:
    """The ⌈level (P+1)⌉-th smallest of P null replicates (+inf when P is too small for ``level``)."""
    rank = math.ceil(level * (len(values) + 1))
    return float(np.sort(values)[rank - 1]) if rank <= len(values) else math.inf


def binary_patterns(n_items: int, n_draws: int, rng: np.random.Generator, first_fixed: bool) -> np.ndarray:
    """(M, n_items) 0/1 patterns for a randomization test: every pattern but the all-zero one (the data)
    when there are at most ``n_draws`` of them (with ``first_fixed``, the first item stays 0: patterns
    that mirror each other give the same statistic), else ``n_draws`` random ones."""
    free = n_items - 1 if first_fixed else n_items
    if free < 20 and 2**free - 1 <= n_draws:
        codes = np.arange(1, 2**free)
        bits = (codes[:, None] >> np.arange(free)[None, :]) & 1
        return np.concatenate([np.zeros((len(codes), n_items - free)), bits], axis=1).astype(np.float64)
    return rng.integers(0, 2, size=(n_draws, n_items)).astype(np.float64)


def permuted_datasets(
    signal: LayerSignal, n_perm: int, rng: np.random.Generator, used: np.ndarray
) -> np.ndarray:
    """(n_perm, n, d_used) standardized mean curves of datasets whose samples each have their layers
    shuffled (each dataset standardized by its own noise level, as the data)."""
    n_samples, n, d = signal.sums.shape
    per_chunk = max(1, MAX_CHUNK // max(1, n_samples * n * d))
    curves = []
    for start in range(0, n_perm, per_chunk):
        size = min(per_chunk, n_perm - start)
        order = np.argsort(rng.random((size, n_samples, n)), axis=-1)
        shuffled = np.take_along_axis(signal.sums[None], order[..., None], axis=2)
        curves.append(standardize_datasets(shuffled, signal, used))
    return np.concatenate(curves)


def sign_flipped_datasets(
    signal: LayerSignal, n_perm: int, rng: np.random.Generator, used: np.ndarray
) -> np.ndarray:
    """(n_perm, n, d_used) standardized mean curves of datasets in which each image's token sums, with its
    own mean over layers removed, get a random sign (each dataset standardized by its own noise level, as
    the data)."""
    images = signal.by_image()
    centred = images.sums - images.sums.mean(axis=1, keepdims=True)
    signs = 1.0 - 2.0 * binary_patterns(images.n_images, n_perm, rng, first_fixed=True)
    if not len(signs):
        return np.zeros((0, *centred.shape[1:2], int(used.sum())))
    per_chunk = max(1, MAX_CHUNK // max(1, centred.size))
    curves = [
        standardize_datasets(signs[start : start + per_chunk, :, None, None] * centred, images, used)
        for start in range(0, len(signs), per_chunk)
    ]
    return np.concatenate(curves)


@dataclass(frozen=True)
class Penalty:
    """The penalty per boundary and how it was chosen.

    Attributes:
        value: β = max(permutation, noise).
        permutation, noise: each null's ``level`` quantile of G.
        observed: G of the data itself (a boundary exists iff observed > value).
        level, n_perm: the quantile and the replicates per null.
        n_images: the images the sampling-noise null flips.
    """

    value: float
    permutation: float
    noise: float
    observed: float
    level: float
    n_perm: int
    n_images: int

    @property
    def note(self) -> str | None:
        """Why no boundary can be claimed, when too few images make the sampling-noise null unbeatable."""
        if math.isfinite(self.noise):
            return None
        needed = 1 + math.ceil(math.log2(1 / (1 - self.level)))
        return (
            f"{self.n_images} image(s) give {2 ** (self.n_images - 1) - 1} sign patterns, too few for the "
            f"sampling-noise null at the {self.level:.0%} level: no boundary can be claimed (needs >= "
            f"{needed} images)"
        )

    def to_dict(self) -> dict:
        return {
            "value": _round(self.value),
            "chosen_by": (
                f"the {self.level:.0%} quantile of the smallest no-boundary penalty over {self.n_perm} "
                "layer-permuted and over sign-flipped (sampling-noise) replicates, the larger of the two: "
                f"a curve without layer structure gets any boundary with probability <= {1 - self.level:.0%}"
            ),
            "layer_permutation": _round(self.permutation),
            "sampling_noise": _round(self.noise),
            "observed": _round(self.observed),
            "level": self.level,
            "n_perm": self.n_perm,
            "n_images": self.n_images,
            "note": self.note,
        }


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 4)


def choose_penalty(
    signal: LayerSignal, standardize: Standardizer, min_size: int, n_perm: int, level: float, seed: int
) -> Penalty:
    """β from the layer-permutation and sampling-noise nulls of ``signal`` (module doc); ``standardize``:
    the data's standardization. Too few images for the sampling-noise null make β infinite."""
    rng = np.random.default_rng(seed)
    permuted = no_boundary_penalty(permuted_datasets(signal, n_perm, rng, standardize.used), min_size)
    permutation = null_quantile(permuted, level)
    flipped = sign_flipped_datasets(signal, n_perm, rng, standardize.used)
    noise = null_quantile(no_boundary_penalty(flipped, min_size), level) if len(flipped) else math.inf
    observed = float(no_boundary_penalty(standardize.apply(signal.mean())[None], min_size)[0])
    return Penalty(max(permutation, noise), permutation, noise, observed, level, n_perm, signal.n_images)
