"""Word labels on token sequences, and the trace features / AUROCs of the mutation-hallucination analysis."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.analysis.stages import detect_curves
from evolens.eval.association import association_report, auroc_with_ci, label_trace, word_features
from evolens.eval.labels import label_words
from tests.eval.conftest import SCENE, TOKENS


def test_label_words() -> None:
    labels = [(x.step, x.word, x.kind, x.hallucinated, x.alternatives) for x in label_words(TOKENS, SCENE)]
    assert labels == [
        (4, "red", "color", False, ("red",)),
        (5, "circle", "shape", False, ("circle",)),
        (9, "green", "color", True, ("blue",)),  # no green star: a binding error; the star is blue
        (10, "star", "shape", False, ("star",)),
        (19, "purple", "color", True, ("red", "blue")),  # "blue square" is negated and not labelled
    ]


def test_auroc_known_answers() -> None:
    positive = np.array([True, True, False, False])
    result = auroc_with_ci(np.array([0.9, 0.4, 0.5, 0.1]), positive, np.array([0, 1, 2, 3]), n_boot=200)
    assert result["auroc"] == pytest.approx(3 / 4)
    assert result["low"] <= 0.75 <= result["high"]
    perfect = auroc_with_ci(np.array([1.0, 0.9, 0.1, 0.0]), positive, np.array([0, 1, 2, 3]), n_boot=200)
    assert perfect["auroc"] == perfect["low"] == perfect["high"] == 1.0
    assert auroc_with_ci(np.ones(3), np.ones(3, dtype=bool), np.arange(3))["auroc"] is None


def test_features_of_labelled_words(labelled_trace) -> None:
    trace, n_layers = labelled_trace
    words = label_trace(trace)
    assert words.hallucinated.tolist() == [False, False, True, False] * 2
    assert words.samples.tolist() == [0] * 4 + [1] * 4
    stages = detect_curves(*_curves(trace))
    assert (stages.critical_layer, stages.mutation_layer) == (1, 6)
    features = word_features(trace, words, stages)
    assert features["jsd_mutation"].tolist() == pytest.approx([0.15, 0.15, 0.6, 0.15] * 2, abs=1e-6)
    assert features["prob_critical"].tolist() == pytest.approx([0.7, 0.7, 0.1, 0.7] * 2, abs=1e-6)
    # the correct word (" blue") led just before the mutation layer in s0 only; any other token in both
    assert features["overtaken"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert features["overtaken_any"].tolist() == [0, 0, 1, 0] * 2
    report = association_report(trace, stages, n_boot=100)
    assert report["n_words"] == 8 and report["n_hallucinated"] == 2
    assert report["features"]["jsd_mutation"]["auroc"] == 1.0
    assert report["features"]["prob_critical"]["auroc"] == 0.0
    assert report["features"]["overtaken"]["auroc"] == pytest.approx(0.75)  # (1 + 0.5) / 2 by hand
    assert report["features"]["overtaken"]["n_undefined"] == 0
    assert len(report["curves"]["hallucinated"]["jsd_next"]) == n_layers


def _curves(trace):
    from evolens.analysis.stages import mean_curves

    return mean_curves(trace)
