"""Distribution level: per-layer means over a whole trace with cluster-bootstrap 95% intervals (pointwise, and
a band simultaneous over layers), by token kind.

Metrics (each a per-layer vector per token, averaged over tokens):

- ``jsd_next``: JSD(p_l, p_{l+1}), nats, one value per transition l = 0..L-1 (plotted at layer l+1);
- ``kl_last``: KL(p_L || p_l), nats;
- ``entropy``: H(p_l), nats;
- ``prob``: p_l(emitted token);
- ``log_rank``: log2(1 + rank of the emitted token) (the mean of raw ranks is dominated by a few
  tokens ranked in the tens of thousands);
- ``top1``: the fraction of tokens whose emitted token is already top-1 at layer l;
- ``attn_image`` (traces that record it, ``trace_metrics``): the share of decoder layer l's attention
  (head-averaged) on the image tokens, at layers 1..L; layers without self-attention (Mllama's
  cross-attention layers) are NaN and left out of the means.
"""

from __future__ import annotations

import numpy as np

from evolens import vocabulary
from evolens.analysis.bootstrap import DEFAULT_N_BOOT, MeanCI, bootstrap_mean, image_clusters
from evolens.analysis.stages import log_rank
from evolens.analysis.tokens import KINDS, kinds_for_trace
from evolens.io.trace import Trace

METRICS = vocabulary.LAYER_STATISTICS
"""The metrics ``layer_statistics`` computes by default (labels: ``evolens.vocabulary``)."""


def metric_values(trace: Trace, metric: str) -> np.ndarray:
    """(n_tokens, L) for a transition metric (``jsd_next``), (n_tokens, L+1) for the others; the derived
    ``log_rank`` and ``top1`` are computed from ``rank``."""
    if metric == "log_rank":
        return log_rank(trace.matrix("rank"))
    if metric == "top1":
        return (trace.matrix("rank") == 0).astype(np.float64)
    if metric not in (*METRICS, *vocabulary.ATTENTION_SHARES):
        raise ValueError(f"unknown metric '{metric}'")
    return trace.matrix(metric)


def trace_metrics(trace: Trace) -> tuple[str, ...]:
    """The metrics ``layer_statistics`` computes for ``trace``: ``METRICS``, and ``attn_image`` where every
    step records it (traces from before the attention readout do not)."""
    return (*METRICS, "attn_image") if trace.has("attn_image") else METRICS


def metric_layers(trace: Trace, metric: str) -> np.ndarray:
    """The lens layer each value of ``metric`` belongs to: 1..L for a transition metric such as
    ``jsd_next`` (the layer that made the change), 0..L otherwise."""
    return np.asarray(vocabulary.metric(metric).layers(trace.n_layers))


def layer_statistics(
    trace: Trace, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, metrics: tuple[str, ...] = METRICS
) -> dict[str, dict[str, MeanCI]]:
    """metric -> token kind ("all" and each kind present) -> per-layer mean, pointwise interval and
    simultaneous band (two-stage bootstrap: images, then the samples of each image)."""
    clusters, n_clusters = trace.sample_index(), len(trace.samples)
    images = image_clusters(trace.samples)
    kinds = kinds_for_trace(trace)
    groups = {"all": np.ones(trace.n_tokens, dtype=bool)}
    groups.update({kind: kinds == kind for kind in KINDS if (kinds == kind).any()})
    statistics: dict[str, dict[str, MeanCI]] = {}
    for metric in metrics:
        values = metric_values(trace, metric)
        statistics[metric] = {
            group: bootstrap_mean(
                values[mask], clusters[mask], n_clusters, n_boot=n_boot, seed=seed, images=images
            )
            for group, mask in groups.items()
        }
    return statistics


def statistics_to_dict(statistics: dict[str, dict[str, MeanCI]], trace: Trace) -> dict:
    """JSON-ready: metric -> {"layers": [...], "label": ..., kind -> {mean, low, high, n_tokens}}."""
    return {
        metric: {
            "layers": metric_layers(trace, metric).tolist(),
            "label": vocabulary.metric(metric).label,
            **{group: ci.to_dict() for group, ci in groups.items()},
        }
        for metric, groups in statistics.items()
    }
