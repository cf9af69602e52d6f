"""The demo VLM on shapes drawn in a way its training never used (``quality.UNSEEN_STYLE``)."""

from __future__ import annotations

import random

import pytest
from scripts.demo.quality import UNSEEN_SIZE, UNSEEN_STYLE, answer_all

from evolens.data.shapes import parse_color, parse_shape, sample_scene
from evolens.data.shapes.render import DEFAULT_SIZE, random_style
from evolens.models import LoadedModel
from evolens.models.demo.assets import asset_dir, read_manifest

HELD_OUT = 10_000_000 + 900  # evaluation seeds, past the known-answer scenes of test_demo_model
N_SCENES = 24


def test_unseen_style_lies_outside_every_training_style() -> None:
    styles = [random_style(random.Random(i)) for i in range(2000)]
    assert UNSEEN_STYLE.supersample not in {s.supersample for s in styles}
    assert UNSEEN_STYLE.resample not in {s.resample for s in styles}
    assert UNSEEN_STYLE.rotation > max(s.rotation for s in styles)
    assert UNSEEN_STYLE.scale > max(s.scale for s in styles)
    assert UNSEEN_STYLE.texture_step > max(s.texture_step for s in styles)
    assert max(map(abs, UNSEEN_STYLE.tint)) > max(max(map(abs, s.tint)) for s in styles)
    assert UNSEEN_SIZE != DEFAULT_SIZE


def _not_trained_on_varied_drawings() -> bool:
    training = read_manifest(asset_dir())["training"]
    unfinished = training["steps_done"] < training["steps_planned"]
    return unfinished or training.get("renderings_per_scene", 1) < 2


@pytest.mark.skipif(
    _not_trained_on_varied_drawings(),
    reason="the committed demo weights were not (fully) trained on varied drawings (manifest training: "
    "renderings_per_scene < 2 or steps_done < steps_planned)",
)
def test_reads_colour_and_shape_of_shapes_drawn_differently(demo_vlm: LoadedModel) -> None:
    """Colour and shape of held-out single shapes in the unseen style: at least 20 of 24 right each
    (chance: 3 and 5), and no more than 2 fewer than on the same scenes drawn by the reference renderer."""
    scenes = [sample_scene(HELD_OUT + i, n_objects=1) for i in range(N_SCENES)]
    for prompt, parse, attribute in (
        ("What is the color of the shape?", parse_color, "color"),
        ("What shape is in the image?", parse_shape, "shape"),
    ):
        truth = [getattr(scene.objects[0], attribute) for scene in scenes]
        prompts = [prompt] * N_SCENES
        unseen = answer_all(demo_vlm, scenes, prompts, 8, N_SCENES, UNSEEN_STYLE, UNSEEN_SIZE)
        reference = answer_all(demo_vlm, scenes, prompts, 8, N_SCENES)
        right_unseen = sum(parse(a) == t for a, t in zip(unseen, truth, strict=True))
        right_reference = sum(parse(a) == t for a, t in zip(reference, truth, strict=True))
        assert right_unseen >= 20, (attribute, right_unseen, unseen)
        assert right_unseen >= right_reference - 2, (attribute, right_unseen, right_reference)
