"""The layer curves the stage search segments: per-sample curves of how much each layer changes the readout.

Per generated token and lens layer l = 2..L, d = 4 features, each the change layer l made:

- ``jsd_next``: Δ_l = JSD(p_{l-1}, p_l);
- ``log_prob_change``: |ln p_l - ln p_{l-1}| of the emitted token (p floored at ``PROB_FLOOR``);
- ``log_rank_change``: |log2(1 + rank_l) - log2(1 + rank_{l-1})| of the emitted token;
- ``entropy_change``: |H(p_l) - H(p_{l-1})|.

The first transition (layer 1, from layer 0: the input embeddings, the worst-read layer) enters nothing.
Stages are regimes of change, as in the study: large changes (rapid evolution), small ones
(stabilization), large ones again (mutation). A level that drifts at a steady pace (a ramp) is one regime,
not a chain of steps.

Tokens are summed within their sample (sums and token counts are kept, so every mean stays token-weighted
and the bootstrap can redraw whole samples). The mean curve is standardized feature by feature: centred on
its mean over layers 2..L and divided by its noise level, the cluster-robust standard error of the mean
curve pooled over layers, from each image's deviation from the mean curve with its own mean over layers
removed (a sample's overall level moves no boundary): s_f² = n_img / (n_img - 1) · mean_l Σ_i E_ilf² / N².
Costs are then in units of the mean curve's own noise, so a boundary's saving grows with its
signal-to-noise ratio; the first transition sets no scale. With a single image there is no between-image
noise to measure, and the scale is the curve's standard deviation over layers. A feature constant over
layers is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evolens.analysis.bootstrap import image_clusters
from evolens.analysis.stages import log_rank
from evolens.io.trace import Trace

FEATURES = ("jsd_next", "log_prob_change", "log_rank_change", "entropy_change")
PROB_FLOOR = 1e-12
"""ln p is taken of max(p, 1e-12): a probability of 0 reads as -27.6 nats, not -inf."""
RESOLUTION = 0.05
"""The noise level is taken as at least this share of a feature's spread over layers (module doc)."""
FIRST_LAYER = 2
"""The first lens layer of the curves: layer 1's change (the first transition) is left out."""


def token_features(trace: Trace) -> np.ndarray:
    """(n_tokens, L-1, 4) the changes every generated token's readout goes through at lens layers 2..L
    (module doc)."""
    log_prob = np.log(np.maximum(trace.matrix("prob"), PROB_FLOOR))
    ranks = log_rank(trace.matrix("rank"))
    entropy = trace.matrix("entropy")
    return np.stack(
        [
            trace.matrix("jsd_next")[:, 1:],  # column l-1 holds Δ_l: drop Δ_1
            np.abs(np.diff(log_prob, axis=1))[:, 1:],
            np.abs(np.diff(ranks, axis=1))[:, 1:],
            np.abs(np.diff(entropy, axis=1))[:, 1:],
        ],
        axis=-1,
    )


@dataclass(frozen=True)
class LayerSignal:
    """One scope's curves, per sample.

    Attributes:
        sums: (n_samples, n, d) per sample, the sum over its tokens of each feature at each layer.
        counts: (n_samples,) tokens per sample (every sample here has at least one).
        sample_ids: the samples, in trace order.
        images: (n_samples,) image cluster of each sample (``bootstrap.image_clusters``), 0..n_images-1.
        layers: (n,) the lens layers of the curve's positions: 2..L.
    """

    sums: np.ndarray
    counts: np.ndarray
    sample_ids: tuple[str, ...]
    images: np.ndarray
    layers: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def n_images(self) -> int:
        return int(self.images.max()) + 1 if len(self.images) else 0

    def mean(self) -> np.ndarray:
        """(n, d) the token-weighted mean curve."""
        return self.sums.sum(0) / self.counts.sum()

    def by_image(self) -> LayerSignal:
        """The same curves summed per image (one "sample" per image)."""
        sums = np.zeros((self.n_images, *self.sums.shape[1:]))
        np.add.at(sums, self.images, self.sums)
        counts = np.bincount(self.images, weights=self.counts, minlength=self.n_images)
        ids = tuple(f"image-{i}" for i in range(self.n_images))
        return LayerSignal(sums, counts, ids, np.arange(self.n_images), self.layers)

    def replicate_means(self, weights: np.ndarray) -> np.ndarray:
        """(B, n, d) token-weighted mean curves when sample s is drawn ``weights[b, s]`` times."""
        totals = np.tensordot(weights, self.sums, axes=(1, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals / (weights @ self.counts)[:, None, None]


def layer_signal(trace: Trace, rows: np.ndarray, features: np.ndarray | None = None) -> LayerSignal:
    """The curves of the tokens ``rows`` (a boolean mask over ``trace.steps``), summed per sample.

    ``features``: ``token_features(trace)`` when already computed.
    """
    values = token_features(trace) if features is None else features
    clusters = trace.sample_index()
    n_samples = len(trace.samples)
    sums = np.zeros((n_samples, *values.shape[1:]))
    np.add.at(sums, clusters[rows], values[rows])
    counts = np.bincount(clusters[rows], minlength=n_samples).astype(np.float64)
    present = counts > 0
    images = image_clusters(trace.samples)[present]
    _, images = np.unique(images, return_inverse=True)  # renumber the images that remain 0..
    return LayerSignal(
        sums=sums[present],
        counts=counts[present],
        sample_ids=tuple(np.asarray(trace.sample_ids, dtype=object)[present]),
        images=images.astype(np.int64),
        layers=np.arange(FIRST_LAYER, trace.n_layers + 1),
    )


@dataclass(frozen=True)
class Standardizer:
    """A fixed standardization: z = (curve - center) / scale on the features in ``used``.

    Attributes:
        center, scale: (d,) per feature.
        used: (d,) False for a feature constant over layers (left out).
    """

    center: np.ndarray
    scale: np.ndarray
    used: np.ndarray

    def apply(self, curves: np.ndarray) -> np.ndarray:
        """(..., n, d_used) standardized ``curves`` (..., n, d)."""
        return ((curves - self.center) / self.scale)[..., self.used]


def image_deviations(sums: np.ndarray, counts: np.ndarray, images: np.ndarray, n_images: int) -> np.ndarray:
    """(..., n_images, n, d) each image's token sums minus its tokens' share of the mean curve, with the
    image's own mean over layers removed; ``sums`` (..., n_samples, n, d)."""
    mean = sums.sum(-3, keepdims=True) / counts.sum()
    deviations = sums - counts[:, None, None] * mean
    membership = np.zeros((n_images, len(images)))
    membership[images, np.arange(len(images))] = 1.0
    per_image = np.einsum("is,...snd->...ind", membership, deviations)
    return per_image - per_image.mean(-2, keepdims=True)


def noise_scale(deviations: np.ndarray, n_tokens: float) -> np.ndarray:
    """(..., d) the mean curve's pooled cluster-robust standard error from ``image_deviations`` (module
    doc)."""
    n_images = deviations.shape[-3]
    variance = (deviations**2).sum(-3).mean(-2) / n_tokens**2 * n_images / max(1, n_images - 1)
    return np.sqrt(variance)


def standardize_datasets(sums: np.ndarray, signal: LayerSignal, used: np.ndarray) -> np.ndarray:
    """(B, n, d_used) the mean curves of B datasets ``sums`` (B, n_samples, n, d) (e.g. ``signal``'s
    samples with their layers shuffled), each standardized by its own centre and noise level exactly as
    ``standardizer`` does the data."""
    curves = sums.sum(1) / signal.counts.sum()
    spread = curves.std(axis=-2)
    if signal.n_images >= 2:
        deviations = image_deviations(sums, signal.counts, signal.images, signal.n_images)
        scale = np.maximum(noise_scale(deviations, signal.counts.sum()), RESOLUTION * spread)
    else:
        scale = spread
    scale = np.where(scale > 0, scale, 1.0)
    return ((curves - curves.mean(axis=-2, keepdims=True)) / scale[:, None, :])[..., used]


def standardizer(signal: LayerSignal) -> Standardizer:
    """The standardization of ``signal``'s mean curve: its centre and noise level (module doc)."""
    curve = signal.mean()
    spread = curve.std(axis=0)
    used = spread > 1e-12 * np.maximum(1.0, np.abs(curve).max(axis=0))
    if signal.n_images >= 2:
        deviations = image_deviations(signal.sums, signal.counts, signal.images, signal.n_images)
        scale = np.maximum(noise_scale(deviations, signal.counts.sum()), RESOLUTION * spread)
    else:
        scale = spread
    return Standardizer(center=curve.mean(axis=0), scale=np.where(used, scale, 1.0), used=used)
