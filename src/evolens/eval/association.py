"""Do hallucinated words look different inside the model? Trace features of faithful vs hallucinated words.

Every labelled word (``evolens.eval.labels``) is a row of the trace's ``steps`` table. With the trace's
stages (c = critical layer, m = first mutation layer; lens layers 0..L), each word gets:

- ``jsd_mutation``: the largest layer change in the mutation stage, max_{l = m..L} JSD(p_{l-1}, p_l)
  (the last ``FALLBACK_MUTATION_LAYERS`` layers when no mutation layer was found);
- ``prob_critical``: p_c(emitted token), the probability of the emitted word at the critical layer;
- ``overtaken``: 1 when the *correct* word (an alternative the scene offers: the true colour of a
  mis-coloured shape, ``evolens.eval.leads``) was top-1 at lens layer m-1 and the hallucinated word leads at
  the last layer; 0 for faithful words; undefined (left out of its AUROC, counted) for a hallucinated word
  without a correct alternative;
- ``overtaken_any``: the earlier, weaker test: 1 when *any* other token led at layer m-1 (the emitted
  word's rank > 0 there);
- ``prob_final`` and ``entropy_final``: the model's own confidence at the last layer (a reference: a trace
  feature is only interesting if it adds to what the output distribution already says).

Each feature's AUROC for telling hallucinated (positive) from faithful words comes with a 95% percentile
interval from a cluster bootstrap that resamples samples (words of one generation are not independent).
AUROC < 0.5 means the feature is lower for hallucinated words. Words whose feature is undefined (NaN) are
left out of that feature's AUROC; ``n_undefined`` counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score

from evolens.errors import InputError
from evolens.eval.labels import WordLabel, label_words
from evolens.eval.leads import correct_leads, overtaken

if TYPE_CHECKING:
    from evolens.analysis.stages import StageResult
    from evolens.io.trace import Trace

FALLBACK_MUTATION_LAYERS = 5
FEATURES = ("jsd_mutation", "prob_critical", "overtaken", "overtaken_any", "prob_final", "entropy_final")


@dataclass(frozen=True)
class LabelledWords:
    """Labelled words of a trace: row indexes into ``trace.steps``, the labels, and each word's sample.

    Attributes:
        rows: (n_words,) row of each word's step in ``trace.steps`` / ``trace.matrix``.
        hallucinated: (n_words,) bool.
        samples: (n_words,) sample index (the bootstrap's clusters).
        labels: the ``WordLabel`` of each word.
    """

    rows: np.ndarray
    hallucinated: np.ndarray
    samples: np.ndarray
    labels: list[WordLabel]


def shapes_scene_of(ground_truth: Any) -> Any:
    """The shapes-world ``Scene`` of a sample's ground truth (JSON text or dict), or None."""
    from evolens.data.shapes import Scene

    if ground_truth is None or (isinstance(ground_truth, float) and np.isnan(ground_truth)):
        return None
    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    if not isinstance(truth, dict) or truth.get("source") != "shapes":
        return None
    return Scene.from_dict({k: v for k, v in truth.items() if k != "source"})


def label_trace(trace: Trace) -> LabelledWords:
    """Label the words of every sample of ``trace`` that has shapes-world ground truth."""
    rows, flags, clusters, labels = [], [], [], []
    for index, sample in enumerate(trace.samples.itertuples(index=False)):
        scene = shapes_scene_of(getattr(sample, "ground_truth", None))
        if scene is None:
            continue
        sample_rows = trace.rows_of(sample.sample_id)
        tokens = list(trace.steps["token"].to_numpy()[sample_rows])
        for label in label_words(tokens, scene):
            rows.append(sample_rows[label.step])
            flags.append(label.hallucinated)
            clusters.append(index)
            labels.append(label)
    if not rows:
        raise InputError(f"{trace.directory}: no sample with shapes-world ground truth and object words")
    return LabelledWords(np.array(rows), np.array(flags, dtype=bool), np.array(clusters), labels)


def word_features(trace: Trace, words: LabelledWords, stages: StageResult) -> dict[str, np.ndarray]:
    """Each feature of the module docstring for every labelled word: name -> (n_words,) (NaN: undefined)."""
    from evolens.analysis.token_strings import TokenStrings

    n = trace.n_layers
    critical = stages.critical_layer if stages.critical_layer is not None else n
    mutation = (
        stages.mutation_layer if stages.mutation_layer is not None else n - FALLBACK_MUTATION_LAYERS + 1
    )
    jsd = trace.matrix("jsd_next")[words.rows]  # (n_words, L): column l-1 = JSD(p_{l-1}, p_l)
    prob = trace.matrix("prob")[words.rows]  # (n_words, L+1)
    rank = trace.matrix("rank")[words.rows]
    entropy = trace.matrix("entropy")[words.rows]
    top1 = trace.topk()[0][words.rows, :, 0]  # (n_words, L+1)
    alternatives = [label.alternatives for label in words.labels]
    leads = correct_leads(top1, alternatives, TokenStrings(trace))
    return {
        "jsd_mutation": jsd[:, mutation - 1 :].max(1),
        "prob_critical": prob[:, critical],
        "overtaken": overtaken(leads, words.hallucinated, rank[:, n], mutation),
        "overtaken_any": (rank[:, mutation - 1] > 0).astype(np.float64),
        "prob_final": prob[:, n],
        "entropy_final": entropy[:, n],
    }


def auroc_with_ci(
    feature: np.ndarray, positive: np.ndarray, clusters: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float | int | None]:
    """AUROC of ``feature`` for ``positive`` with a cluster-bootstrap 95% interval (None when undefined).
    Rows whose feature is NaN are left out and counted (``n_undefined``)."""
    defined = ~np.isnan(feature)
    n_undefined = int((~defined).sum())
    feature, positive, clusters = feature[defined], positive[defined], clusters[defined]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return {
            "auroc": None,
            "low": None,
            "high": None,
            "n_hallucinated": n_pos,
            "n_faithful": n_neg,
            "n_undefined": n_undefined,
        }
    point = float(roc_auc_score(positive, feature))
    unique = np.unique(clusters)
    members = {c: np.flatnonzero(clusters == c) for c in unique}
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_boot):
        drawn = np.concatenate([members[c] for c in rng.choice(unique, size=len(unique), replace=True)])
        if positive[drawn].all() or not positive[drawn].any():
            continue
        replicates.append(roc_auc_score(positive[drawn], feature[drawn]))
    low, high = np.percentile(replicates, [2.5, 97.5]) if replicates else (np.nan, np.nan)
    return {
        "auroc": point,
        "low": float(low),
        "high": float(high),
        "n_hallucinated": n_pos,
        "n_faithful": n_neg,
        "n_undefined": n_undefined,
    }


def group_curves(trace: Trace, words: LabelledWords) -> dict[str, dict[str, list[float]]]:
    """Mean per-layer ``jsd_next`` (L) and ``prob`` (L+1) of faithful and of hallucinated words."""
    curves: dict[str, dict[str, list[float]]] = {}
    for name, mask in (("faithful", ~words.hallucinated), ("hallucinated", words.hallucinated)):
        rows = words.rows[mask]
        curves[name] = {
            column: (trace.matrix(column)[rows].mean(0).round(6).tolist() if len(rows) else [])
            for column in ("jsd_next", "prob")
        }
    return curves


def _mean(values: np.ndarray) -> float | None:
    """The mean of the defined (non-NaN) values, None when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def association_report(trace: Trace, stages: StageResult, n_boot: int = 1000) -> dict[str, Any]:
    """Labels, features, AUROCs with intervals and group curves of one trace, as a JSON-ready dict."""
    words = label_trace(trace)
    features = word_features(trace, words, stages)
    return {
        "trace": str(trace.directory),
        "model": trace.meta.get("model"),
        "stages": stages.to_dict(),
        "n_samples": len(np.unique(words.samples)),
        "n_words": len(words.rows),
        "n_hallucinated": int(words.hallucinated.sum()),
        "by_kind": {
            kind: {
                "n": sum(label.kind == kind for label in words.labels),
                "hallucinated": sum(label.kind == kind and label.hallucinated for label in words.labels),
            }
            for kind in ("shape", "color")
        },
        "features": {
            name: auroc_with_ci(values, words.hallucinated, words.samples, n_boot)
            for name, values in features.items()
        },
        "feature_means": {
            name: {
                "faithful": _mean(values[~words.hallucinated]),
                "hallucinated": _mean(values[words.hallucinated]),
            }
            for name, values in features.items()
        },
        "curves": group_curves(trace, words),
    }
