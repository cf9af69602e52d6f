"""The skipping experiment's pieces: comparison metrics (known answers) and conditions from stages."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.analysis.stages import detect_curves
from evolens.data.resolve import Sample
from evolens.errors import InputError
from evolens.interventions.experiments import (
    Condition,
    Generation,
    custom_conditions,
    edit_distance,
    normalised_edit_distance,
    random_plan,
    stage_conditions,
    summarise,
    token_agreement,
)
from evolens.interventions.plan import LayerPlan


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "abc", 0), ("flaw", "lawn", 2), ("ab", "ba", 2)],
)
def test_edit_distance_known_answers(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_agreement_and_normalised_distance() -> None:
    assert token_agreement([1, 2, 3, 4], [1, 2, 9]) == pytest.approx(2 / 4)
    assert token_agreement([], []) == 1.0
    assert normalised_edit_distance([1, 2, 3, 4], [1, 2, 9]) == pytest.approx(2 / 4)
    assert normalised_edit_distance([5], [5]) == 0.0


def test_random_controls_have_the_same_size_and_are_seeded() -> None:
    assert len(random_plan(30, 9, 0).skipped) == 9
    assert random_plan(30, 9, 1) == random_plan(30, 9, 1)
    assert random_plan(30, 9, 1) != random_plan(30, 9, 2)
    conditions = custom_conditions(LayerPlan.parse("12-20", 30, name="12-20"), seeds=[0, 1])
    assert [c.name for c in conditions] == ["baseline", "12-20", "random-12-20-s0", "random-12-20-s1"]
    assert all(len(c.plan.skipped) == 9 for c in conditions[1:])


def test_stage_conditions_follow_the_detected_layers() -> None:
    n = 30
    jsd = np.r_[np.full(14, 0.4), np.full(12, 0.01), np.full(4, 0.35)]  # settles after 14, jumps at 27
    prob = np.r_[np.zeros(14), np.full(n + 1 - 14, 0.8)]
    stages = detect_curves(jsd, prob, np.zeros(n + 1))
    c, m = stages.critical_layer, stages.mutation_layer
    assert (c, m) == (14, 27)
    by_name = {x.name: x for x in stage_conditions(stages, seeds=[0])}
    assert by_name["stabilization"].plan.skipped == frozenset(range(c, m - 1))  # produce lens c+1..m-1
    assert by_name["mutation"].plan.skipped == frozenset(range(m - 1, n))  # produce lens m..L
    assert by_name["critical_to_L-5"].plan.skipped == frozenset(range(c, n - 5))
    assert len(by_name["random-mutation-s0"].plan.skipped) == n - m + 1


def test_no_critical_layer_is_an_input_error() -> None:
    stages = detect_curves(np.full(30, 0.4), np.zeros(31), np.zeros(31))
    with pytest.raises(InputError, match="no critical layer"):
        stage_conditions(stages)


def test_summary_against_the_baseline() -> None:
    plan = LayerPlan.none(4)
    base = Generation(Condition("baseline", "baseline", plan), [[1, 2, 3], [4, 5]], ["a", "b"], 2.0)
    other = Generation(Condition("x", "custom", LayerPlan.of(4, {1})), [[1, 2, 9], [4, 5]], ["c", "d"], 1.0)
    samples = [Sample("s0", None, "p"), Sample("s1", None, "p")]
    summary = summarise(base, other, samples)
    assert summary.agreement.tolist() == pytest.approx([2 / 3, 1.0])
    assert summary.speedup == pytest.approx(2.0)
    assert summary.speedup_per_token == pytest.approx(2.0)
    agreement = summary.aggregates["token_agreement"]
    assert agreement["mean"] == pytest.approx(5 / 6)
    assert agreement["low"] <= agreement["mean"] <= agreement["high"]
    assert summary.aggregates["accuracy"]["n"] == 0  # no ground truth: no accuracy


def test_summary_scores_shapes_descriptions() -> None:
    from evolens.data.shapes import Background, Scene, ShapeObject

    def shape(kind: str, color: str) -> ShapeObject:
        return ShapeObject(kind, color, "large", "center", (0.5, 0.5), 0.1, (0, 0, 0))

    scene = Scene(3, Background("white", "plain"), (shape("circle", "red"), shape("star", "blue")))
    truth = {"source": "shapes", **scene.to_dict()}
    samples = [Sample(f"s{i}", None, "Describe this image.", truth) for i in range(2)]
    plan = LayerPlan.none(4)
    base = Generation(Condition("baseline", "baseline", plan), [[1], [2]], ["", ""], 1.0)
    texts = ["A red circle and a green star.", "Nothing to see."]
    other = Generation(Condition("x", "custom", LayerPlan.of(4, {1})), [[1], [3]], texts, 1.0)
    aggregates = summarise(base, other, samples).aggregates
    assert aggregates["chair_i"]["mean"] == pytest.approx(1 / 2)  # 1 of the 2 mentions
    assert aggregates["chair_s"]["mean"] == pytest.approx(1 / 2)  # both descriptions count
    assert aggregates["chair_s"]["n"] == 2 and aggregates["chair_i"]["n"] == 1
    assert aggregates["accuracy"]["mean"] == pytest.approx((1 / 2 + 0) / 2)  # recall of the scene's objects


def test_unreadable_images_are_listed_not_fatal(tmp_path) -> None:
    from PIL import Image

    from evolens.data.resolve import open_images
    from evolens.data.rows import DataRow

    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(good)
    bad.write_bytes(b"not a png")
    rows = [DataRow("good", good, "Describe."), DataRow("bad", bad, "Describe.")]
    samples, images, failures = open_images(rows, vision=True)
    assert [s.sample_id for s in samples] == ["good"] and images[0] is not None and images[0].size == (8, 8)
    assert [f["sample_id"] for f in failures] == ["bad"] and "bad.png" in str(failures[0]["error"])
