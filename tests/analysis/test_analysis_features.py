"""Feature maps: the states picked, determinism of the 2-D maps, and the per-layer separation measures."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.analysis import features as feat
from evolens.errors import UsageError
from evolens.io.trace import load_trace
from tests.analysis.conftest import N_LAYERS, ExactTrace


def test_single_sample_points_are_every_step_at_every_layer_but_0(exact_trace: ExactTrace) -> None:
    points = feat.single_sample_points(exact_trace.trace, "img-1")
    assert points.states.shape == (7 * N_LAYERS, 8)
    assert points.rows["layer"].tolist() == list(range(1, N_LAYERS + 1)) * 7
    row = points.rows.index[(points.rows["step"] == 3) & (points.rows["layer"] == 2)][0]
    np.testing.assert_allclose(points.states[row], exact_trace.samples[1].hidden[3, 2], rtol=1e-3, atol=1e-3)
    assert points.rows["token"][row] == exact_trace.samples[1].tokens[3]


def test_answer_step_by_index_or_words(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    tokens = exact_trace.samples[0].tokens
    assert feat.answer_step(trace, "img-0", 2) == 2
    assert feat.answer_step(trace, "img-0", 99) is None
    assert feat.answer_step(trace, "img-0", [tokens[3].strip().upper(), "zzz"]) == tokens.index(tokens[3])
    assert feat.answer_step(trace, "img-0", ["zzz"]) is None


def test_automatic_answer_step_is_the_first_content_word(planted_trace_dir) -> None:
    trace = load_trace(planted_trace_dir)  # " The red circle is big." to "What is the color of the shape?"
    assert feat.answer_step(trace, "shape-0", "auto") == 1
    points = feat.answer_points(trace, trace.sample_ids, "auto")
    assert set(points.rows["answer"]) == {"red"} and set(points.rows["step"]) == {1}


def test_answer_points_need_two_samples(exact_trace: ExactTrace) -> None:
    points = feat.answer_points(exact_trace.trace, exact_trace.trace.sample_ids, 1)
    assert points.states.shape == (3 * N_LAYERS, 8)
    assert points.rows["sample_id"].nunique() == 3
    with pytest.raises(UsageError):
        feat.answer_points(exact_trace.trace, ["img-0"], 1)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_maps_are_deterministic(method: str) -> None:
    states = np.random.default_rng(0).normal(size=(40, 10))
    first = feat.embed_2d(states, method, seed=0)
    assert first.shape == (40, 2)
    np.testing.assert_array_equal(first, feat.embed_2d(states, method, seed=0))


def test_pca_keeps_the_main_direction() -> None:
    rng = np.random.default_rng(0)
    states = np.outer(np.linspace(-5, 5, 30), rng.normal(size=6)) + rng.normal(size=(30, 6)) * 0.01
    xy = feat.embed_2d(states, "pca")
    assert abs(np.corrcoef(xy[:, 0], np.linspace(-5, 5, 30))[0, 1]) > 0.999


def test_separation_grows_where_images_diverge(planted_trace_dir) -> None:
    """Planted: all images share their shallow states and separate by image with depth."""
    trace = load_trace(planted_trace_dir)
    points = feat.answer_points(trace, trace.sample_ids, ["red"])
    separation = feat.separation_by_layer(points)
    assert separation["layer"].tolist() == list(range(1, 31))
    dispersion = separation["dispersion"].to_numpy()
    assert dispersion[0] < 0.05 and dispersion[-1] > 1.0
    assert dispersion[:5].max() < dispersion[10:15].min() and dispersion[10:15].max() < dispersion[-5:].min()
    by_image = separation["silhouette_by_image"].to_numpy()
    assert by_image[:5].max() < 0.1 and by_image[-5:].min() > 0.3
    assert separation["silhouette_by_answer"].isna().all()  # one answer word: undefined


def test_silhouette_by_answer_when_answers_differ() -> None:
    rng = np.random.default_rng(0)
    import pandas as pd

    answers = ["red", "red", "blue", "blue", "green", "green"]
    centers = {"red": 0.0, "blue": 10.0, "green": 20.0}
    states, rows = [], []
    for index, answer in enumerate(answers):
        for layer in (1, 2):
            spread = centers[answer] if layer == 2 else 0.0
            states.append(spread + rng.normal(size=4) * 0.1)
            rows.append(
                {"sample_id": f"s{index}", "step": 0, "token": answer, "layer": layer, "answer": answer}
            )
    points = feat.FeaturePoints(np.array(states), pd.DataFrame(rows))
    separation = feat.separation_by_layer(points).set_index("layer")
    assert separation.loc[2, "silhouette_by_answer"] > 0.9
    assert separation.loc[1, "silhouette_by_answer"] < 0.3
