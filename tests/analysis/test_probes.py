"""Information probes: held-out linear probes per layer find an attribute from the layer it is stored in
on, images are held out whole, the asked attribute and its control are named, and a trace without hidden
states or ground truth says why nothing was computed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from evolens.analysis.probes import asked_attribute, held_out_accuracy, probes, wilson
from evolens.io.trace import load_trace
from tests.analysis.findings_traces import COLOR_FROM, SHAPE_FROM, shapes_samples
from tests.analysis.synthetic import write_trace


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    samples = shapes_samples(n_images=12, prompts=("color", "describe"))
    return probes(load_trace(write_trace(tmp_path_factory.mktemp("probes") / "trace", samples)))


def test_each_attribute_is_found_from_the_layer_that_stores_it(probed: dict) -> None:
    colour_prompt, describe_prompt = probed["prompts"]
    assert (colour_prompt["asked"], colour_prompt["control"], colour_prompt["step"]) == ("color", "shape", 0)
    assert (describe_prompt["asked"], describe_prompt["control"]) == (None, None)
    colour, shape = colour_prompt["attributes"]["color"], colour_prompt["attributes"]["shape"]
    assert (colour["role"], shape["role"], describe_prompt["attributes"]["color"]["role"]) == (
        "asked",
        "control",
        "not asked",
    )
    assert colour["layers"] == list(range(7)) and (colour["n_samples"], colour["n_images"]) == (12, 12)
    assert colour["chance"] == pytest.approx(1 / 3, abs=1e-4) and shape["chance"] == 0.5
    assert colour["classes"] == ["blue", "green", "red"]
    assert all(a == 1.0 for a in colour["accuracy"][COLOR_FROM:])
    assert all(a == 1.0 for a in shape["accuracy"][SHAPE_FROM:])
    assert max(shape["accuracy"][COLOR_FROM:SHAPE_FROM]) <= 0.5, "the colour's layers do not know the shape"
    # layer 0 holds one state for every image: the probe knows nothing there, as the majority rule
    assert colour["accuracy"][0] == colour["chance_held_out"] <= colour["chance"]
    for entry in (colour, shape):
        assert all(
            low <= a <= high
            for low, a, high in zip(entry["low"], entry["accuracy"], entry["high"], strict=True)
        )
    assert colour_prompt["attributes"]["count"] == {
        "role": "not asked",
        "not computed": "every image has the same value (1): nothing to tell apart",
    }


def test_images_are_held_out_whole() -> None:
    """Two samples per image with the same state and a label that only the image's own state gives away: a
    probe tested on samples whose twin it was trained on would score ~1; held-out images give chance."""
    rng = np.random.default_rng(0)
    n_images = 20
    image_states = rng.normal(size=(n_images, 40))
    states = np.repeat(image_states, 2, axis=0) + rng.normal(scale=0.01, size=(2 * n_images, 40))
    labels = np.repeat(rng.permutation(np.array(["a", "b"] * (n_images // 2))), 2)
    groups = np.repeat(np.arange(n_images), 2)
    accuracy, _ = held_out_accuracy(states, labels, groups, n_folds=5)
    assert accuracy < 0.75, accuracy


def test_wilson_interval() -> None:
    assert wilson(0.5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson(1.0, 12)
    assert high == 1.0 and low == pytest.approx(0.7575, abs=1e-4)


@pytest.mark.parametrize(
    ("prompt", "asked"),
    [
        ("What is the color of the shape?", "color"),
        ("Which colour is the star?", "color"),
        ("What shape is in the image?", "shape"),
        ("How many shapes are in the image?", "count"),
        ("Count the shapes.", "count"),
        ("Where is the red circle?", "position"),
        ("Describe this image.", None),
        ("Is there a green triangle in the image?", None),
    ],
)
def test_the_attribute_a_prompt_asks_about(prompt: str, asked: str | None) -> None:
    assert asked_attribute(prompt) == asked


def test_without_hidden_states_or_ground_truth_nothing_is_computed(tmp_path: Path) -> None:
    samples = shapes_samples(n_images=4)
    no_states = [dataclasses.replace(s, hidden=None) for s in samples]
    assert probes(load_trace(write_trace(tmp_path / "a", no_states))) == {
        "not computed": "no stored hidden states (trace with --keep-hidden)"
    }
    no_truth = [dataclasses.replace(s, extra={}) for s in samples]
    assert probes(load_trace(write_trace(tmp_path / "b", no_truth))) == {
        "not computed": "no shapes-world ground truth in the samples (objects and their attributes)"
    }
    both = shapes_samples(n_images=4, prompts=("color", "describe"))
    half = [dataclasses.replace(s, hidden=None) if s.prompt.startswith("Describe") else s for s in both]
    described = probes(load_trace(write_trace(tmp_path / "d", half)))["prompts"][1]
    assert described["not computed"] == "no stored hidden states (trace with --keep-hidden)"
    coco = [dataclasses.replace(s, extra={"ground_truth": json.dumps({"objects": ["cat"]})}) for s in samples]
    assert "not computed" in probes(load_trace(write_trace(tmp_path / "c", coco)))


def test_too_few_images_are_not_probed(tmp_path: Path) -> None:
    result = probes(load_trace(write_trace(tmp_path / "t", shapes_samples(n_images=3))))
    colour = result["prompts"][0]["attributes"]["color"]
    assert colour == {"role": "asked", "not computed": "3 images with this attribute; a probe needs 4"}
