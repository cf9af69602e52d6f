"""Cluster bootstrap, per-layer statistics by token kind, and the dataset-level stage statistics."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.analysis.bootstrap import bootstrap_mean, percentile_interval, replicate_counts, replicate_means
from evolens.analysis.distribution import layer_statistics, metric_layers, statistics_to_dict
from evolens.analysis.stage_stats import (
    per_token_overview,
    per_token_stages,
    stage_intervals,
    threshold_stability,
)
from evolens.analysis.stages import StageConfig
from evolens.analysis.tokens import kinds_for_trace
from evolens.io.trace import load_trace
from tests.analysis.conftest import N_LAYERS, ExactTrace


def test_two_clusters_give_the_three_possible_means() -> None:
    """Clusters valued 0 and 1: replicate means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4."""
    counts = replicate_counts(2, 4000, seed=1)
    means = replicate_means(np.array([[0.0], [1.0]]), np.array([0, 1]), 2, counts)[:, 0]
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.03)
    assert percentile_interval(means) == (0.0, 1.0)


def test_replicates_are_token_weighted() -> None:
    values = np.array([[1.0], [1.0], [1.0], [4.0]])
    clusters = np.array([0, 0, 0, 1])
    counts = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(replicate_means(values, clusters, 2, counts)[:, 0], [7 / 4, 1.0, 4.0])


def test_equal_size_clusters_equal_a_bootstrap_of_sample_means() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 3))
    clusters = np.repeat(np.arange(6), 5)
    counts = replicate_counts(6, 200, seed=3)
    sample_means = values.reshape(6, 5, 3).mean(1)
    np.testing.assert_allclose(
        replicate_means(values, clusters, 6, counts), replicate_means(sample_means, np.arange(6), 6, counts)
    )


def test_bootstrap_mean_interval_properties() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 4)) + np.arange(4)
    clusters = np.repeat(np.arange(8), 5)
    ci = bootstrap_mean(values, clusters, 8, n_boot=300, seed=0)
    np.testing.assert_allclose(ci.mean, values.mean(0))
    assert (ci.low <= ci.mean).all() and (ci.mean <= ci.high).all() and ci.n_tokens == 40
    again = bootstrap_mean(values, clusters, 8, n_boot=300, seed=0)
    np.testing.assert_array_equal(ci.low, again.low)
    same = bootstrap_mean(np.ones((10, 2)), np.repeat(np.arange(5), 2), 5, n_boot=50)
    np.testing.assert_array_equal(same.low, same.high)


def test_layer_statistics_by_kind_match_plain_means(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    statistics = layer_statistics(trace, n_boot=50, seed=0)
    kinds = kinds_for_trace(trace)
    prob = np.concatenate([s.prob for s in exact_trace.samples])
    rank = np.concatenate([s.rank for s in exact_trace.samples])
    np.testing.assert_allclose(statistics["prob"]["all"].mean, prob.mean(0), rtol=1e-5)
    np.testing.assert_allclose(statistics["top1"]["all"].mean, (rank == 0).mean(0))
    np.testing.assert_allclose(statistics["log_rank"]["all"].mean, np.log2(1 + rank).mean(0), rtol=1e-6)
    assert statistics["top1"]["all"].mean[-1] == 1.0  # greedy: the last layer's top-1 is the emitted token
    for kind in set(kinds):
        np.testing.assert_allclose(statistics["prob"][kind].mean, prob[kinds == kind].mean(0), rtol=1e-5)
        assert statistics["prob"][kind].n_tokens == int((kinds == kind).sum())
    as_json = statistics_to_dict(statistics, trace)
    assert as_json["jsd_next"]["layers"] == list(range(1, N_LAYERS + 1))
    assert (
        as_json["entropy"]["layers"] == metric_layers(trace, "entropy").tolist() == list(range(N_LAYERS + 1))
    )


def test_per_token_stages_find_the_planted_layers(planted_trace_dir) -> None:
    trace = load_trace(planted_trace_dir)
    tokens = per_token_stages(trace, StageConfig())
    assert len(tokens) == trace.n_tokens
    assert (tokens["critical_layer"] == 12).all() and (tokens["critical_layer_prob"] == 12).all()
    assert (tokens["mutation_layer"] == 27).all() and tokens["critical_agree"].all()
    assert list(tokens["kind"][:3]) == ["function", "content", "content"]
    overview = per_token_overview(tokens)
    assert overview["critical_layer"] == {"found": 1.0, "median": 12.0, "q25": 12.0, "q75": 12.0}
    assert overview["critical_agreement_rate"] == 1.0


def test_stage_intervals_and_stability(planted_trace_dir) -> None:
    trace = load_trace(planted_trace_dir)
    intervals = stage_intervals(trace, StageConfig(), n_boot=50, seed=0)
    assert intervals["critical_layer"] == {
        "estimate": 12,
        "low": 12.0,
        "high": 12.0,
        "found": 1.0,
        "found_share": 1.0,
    }
    assert intervals["mutation_layer"]["estimate"] == 27 and intervals["mutation_layer"]["found"] == 1.0
    stability = threshold_stability(trace, StageConfig())
    assert [row["value"] for row in stability["sweeps"]["jsd_threshold"]] == [0.1, 0.15, 0.2, 0.3, 0.4]
    assert stability["spans"]["critical_layer"] == {
        "swept": "jsd_threshold",
        "min": 12,
        "max": 12,
        "missing": 0,
    }
    assert stability["spans"]["mutation_layer"]["min"] == 27


def test_interval_widens_when_samples_disagree(tmp_path) -> None:
    """Samples settling at layers 8 and 16: the bootstrap interval of the critical layer spans both."""
    from tests.analysis.synthetic import planted_sample, sigmoid_curve, write_trace

    samples = []
    for index, settle in enumerate((8, 16, 8, 16, 8, 16)):
        jsd = np.full((4, 30), 0.01)
        jsd[:, :settle] = 0.4
        samples.append(planted_sample(f"s{index}", jsd, np.stack([sigmoid_curve(30, settle - 0.5)] * 4)))
    trace = load_trace(write_trace(tmp_path / "trace", samples))
    intervals = stage_intervals(trace, StageConfig(), n_boot=200, seed=0)
    assert intervals["critical_layer"]["low"] == 8 and intervals["critical_layer"]["high"] == 16
