"""Known-answer tests of the stage detector on planted curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evolens.analysis.stages import StageConfig, build_stages, detect_curves, detect_stages, mean_curves
from evolens.errors import UsageError
from evolens.io.trace import load_trace
from tests.analysis.synthetic import planted_sample, sigmoid_curve, write_trace

L = 30


def planted_jsd(
    high_until: int = 12, spike_at: int | None = 27, high: float = 0.4, low: float = 0.01
) -> np.ndarray:
    """(L,) JSD with Δ_l = high for layers l <= high_until, low after, and Δ_spike_at = high.

    Index l-1 holds Δ_l, the change made by layer l.
    """
    delta = np.full(L, low)
    delta[:high_until] = high
    if spike_at is not None:
        delta[spike_at - 1] = high
    return delta


def test_planted_critical_and_mutation_layers() -> None:
    result = detect_curves(planted_jsd(), sigmoid_curve(L, midpoint=11.5))
    assert result.critical_layer == 12
    assert result.mutation_layers == (27,)
    assert result.mutation_causes[27] == ("jsd",)
    assert [(s.name, s.start, s.end) for s in result.stages] == [
        ("rapid_evolution", 0, 11),
        ("stabilization", 12, 26),
        ("mutation", 27, 30),
    ]


def test_probability_criterion_is_the_half_maximum_crossing() -> None:
    prob = sigmoid_curve(L, midpoint=11.5)
    expected = int(np.flatnonzero(prob >= 0.5 * prob.max())[0])
    result = detect_curves(planted_jsd(), prob)
    assert result.critical_layer_prob == expected == 12
    assert result.critical_difference == 0 and result.critical_agree


def test_disagreeing_criteria_are_reported() -> None:
    result = detect_curves(planted_jsd(), sigmoid_curve(L, midpoint=20.5))
    assert result.critical_layer == 12 and result.critical_layer_prob == 21
    assert result.critical_difference == 9 and result.critical_agree is False


def test_no_mutation_present_says_so() -> None:
    result = detect_curves(planted_jsd(spike_at=None), sigmoid_curve(L, midpoint=11.5))
    assert result.critical_layer == 12
    assert result.mutation_layer is None and result.mutation_layers == ()
    assert [s.name for s in result.stages] == ["rapid_evolution", "stabilization"]
    assert result.stages[-1].end == L


def test_never_stable_curve_has_one_stage() -> None:
    result = detect_curves(np.full(L, 0.3) + np.arange(L) * 1e-3, sigmoid_curve(L, 15))
    assert result.critical_layer is None and result.mutation_layer is None
    assert [(s.name, s.start, s.end) for s in result.stages] == [("rapid_evolution", 0, L)]


def test_monotone_decreasing_jsd() -> None:
    """An exponential decay: the critical layer is where it first falls below 0.2 x its max."""
    delta = 0.5 * np.exp(-np.arange(L) / 4.0)
    first_below = int(np.flatnonzero(delta < 0.2 * delta.max())[0])
    result = detect_curves(delta, sigmoid_curve(L, 8))
    assert result.critical_layer == first_below == 7
    assert result.mutation_layers == ()


@pytest.mark.parametrize("seed", range(8))
def test_noise_robustness(seed: int) -> None:
    """Noise of up to 5% of the curve's range moves no layer by more than one."""
    rng = np.random.default_rng(seed)
    delta = planted_jsd() + rng.uniform(-0.02, 0.02, L).clip(-0.01, None)
    prob = (sigmoid_curve(L, 11.5) + rng.uniform(-0.03, 0.03, L + 1)).clip(0, 1)
    result = detect_curves(delta, prob)
    assert abs(result.critical_layer - 12) <= 1
    assert result.mutation_layers == (27,)
    assert abs(result.critical_layer_prob - 12) <= 1


@pytest.mark.parametrize("factor", [1e-3, 0.1, 1.0, 1.7])
def test_relative_thresholds_are_scale_free(factor: float) -> None:
    base = detect_curves(planted_jsd(), sigmoid_curve(L, 11.5))
    scaled = detect_curves(planted_jsd() * factor, sigmoid_curve(L, 11.5) * min(factor, 1 / 0.95))
    assert (scaled.critical_layer, scaled.mutation_layers, scaled.critical_layer_prob) == (
        base.critical_layer,
        base.mutation_layers,
        base.critical_layer_prob,
    )


def test_ln2_scale_uses_an_absolute_threshold() -> None:
    """With scale ln 2, a curve whose values all sit below 0.2 ln 2 is stable from layer 0."""
    delta = planted_jsd(high=0.1, low=0.001, spike_at=None)
    config = StageConfig(jsd_scale="ln2")
    assert detect_curves(delta, sigmoid_curve(L, 5), config=config).critical_layer == 0
    assert detect_curves(delta, sigmoid_curve(L, 5)).critical_layer == 12


def test_mutation_by_probability_and_rank() -> None:
    """Flat JSD after the critical layer, but the emitted token's probability collapses at layer 28."""
    prob = sigmoid_curve(L, 11.5)
    prob[28:] = 0.2
    rank = np.zeros(L + 1)
    rank[:12] = 1000
    rank[25] = 40  # a 5-bit jump up at 25 and down at 26
    result = detect_curves(planted_jsd(spike_at=None), prob, np.log2(1 + rank))
    assert result.mutation_layers == (25, 26, 28)
    assert result.mutation_causes == {25: ("rank",), 26: ("rank",), 28: ("prob",)}
    assert result.stages[-1].start == 25


def test_mutations_are_only_searched_in_late_layers() -> None:
    delta = planted_jsd(high_until=3, spike_at=8)
    assert detect_curves(delta, sigmoid_curve(L, 3)).mutation_layers == ()
    early = StageConfig(mutation_min_depth=0.2)
    assert detect_curves(delta, sigmoid_curve(L, 3), config=early).mutation_layers == (8,)


@pytest.mark.parametrize("seed", range(20))
def test_stages_are_contiguous_and_cover_all_layers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_layers = int(rng.integers(4, 40))
    result = detect_curves(
        rng.uniform(0, 0.7, n_layers) ** 3, rng.uniform(0, 1, n_layers + 1), rng.uniform(0, 15, n_layers + 1)
    )
    assert result.stages[0].start == 0 and result.stages[-1].end == n_layers
    for before, after in zip(result.stages, result.stages[1:], strict=False):
        assert after.start == before.end + 1 and before.start <= before.end
    if result.mutation_layer is not None:
        assert result.mutation_layer > result.critical_layer
        assert result.stage_of(result.mutation_layer) == "mutation"
    for layer in range(n_layers + 1):
        result.stage_of(layer)


def test_build_stages_edge_cases() -> None:
    assert [(s.name, s.start, s.end) for s in build_stages(10, 0, None)] == [("stabilization", 0, 10)]
    assert [(s.name, s.start, s.end) for s in build_stages(10, 4, 10)] == [
        ("rapid_evolution", 0, 3),
        ("stabilization", 4, 9),
        ("mutation", 10, 10),
    ]


def test_min_stable_layers_scales_with_depth() -> None:
    config = StageConfig()
    assert [config.min_stable_layers(n) for n in (4, 18, 30, 32, 80)] == [2, 2, 3, 3, 8]


@pytest.mark.parametrize(
    "values",
    [
        {"jsd_threshold": 0},
        {"jsd_threshold": 1.5},
        {"jsd_scale": "median"},
        {"mutation_rank_jump_bits": -1},
        {"nope": 1},
    ],
)
def test_bad_parameters_are_usage_errors(values: dict) -> None:
    with pytest.raises(UsageError):
        StageConfig.from_dict(values)


def test_config_round_trips() -> None:
    config = StageConfig(jsd_threshold=0.3, jsd_scale="ln2", mutation_jsd_threshold=0.5)
    assert StageConfig.from_dict(config.to_dict()) == config


def test_detect_stages_on_a_trace_uses_the_mean_curves(tmp_path) -> None:
    rng = np.random.default_rng(0)
    samples = []
    for index, midpoint in enumerate((10.5, 11.5, 12.5)):
        high_until = math.floor(midpoint) + 1
        jsd = np.stack([planted_jsd(high_until=high_until) + rng.uniform(0, 0.005, L) for _ in range(5)])
        prob = np.stack([sigmoid_curve(L, midpoint)] * 5)
        samples.append(planted_sample(f"s{index}", jsd, prob))
    trace = load_trace(write_trace(tmp_path / "trace", samples))
    jsd_mean, prob_mean, rank_mean = mean_curves(trace)
    np.testing.assert_allclose(jsd_mean, np.concatenate([s.jsd_next for s in samples]).mean(0), rtol=1e-6)
    result = detect_stages(trace)
    assert result == detect_curves(jsd_mean, prob_mean, rank_mean)
    # the samples settle after layers 11, 12 and 13: the mean change made by layer 13 is still
    # 1/3 x 0.4 >= 0.2 x max, so the pooled curve settles at 13
    assert result.critical_layer == 13 and result.mutation_layers == (27,)
