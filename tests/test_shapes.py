"""The shapes world: determinism, scene invariants, rendering, instruction data and the text parser."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from evolens.data.shapes import (
    COLORS,
    SHAPES,
    Scene,
    parse_background,
    parse_color,
    parse_count,
    parse_description,
    parse_shape,
    parse_yes_no,
    render_scene,
    sample_scene,
)
from evolens.data.shapes.parse import ParsedObject, scene_objects
from evolens.data.shapes.text import conversation, count_turn, describe, exist_turn
from evolens.data.shapes.world import POSITIONS, reading_order

SEEDS = range(300)


def test_same_seed_same_scene_and_pixels() -> None:
    for seed in (0, 7, 10_000_001):
        assert sample_scene(seed) == sample_scene(seed)
        assert np.array_equal(
            np.asarray(render_scene(sample_scene(seed))), np.asarray(render_scene(sample_scene(seed)))
        )
    assert sample_scene(1) != sample_scene(2)


def test_scene_invariants() -> None:
    counts = set()
    for seed in SEEDS:
        scene = sample_scene(seed)
        counts.add(len(scene.objects))
        positions = [o.position for o in scene.objects]
        assert len(set(positions)) == len(positions), "one object per grid cell"
        assert len({(o.color, o.shape) for o in scene.objects}) == len(scene.objects), "names are unique"
        assert positions == sorted(positions, key=reading_order)
        for obj in scene.objects:
            row, column = POSITIONS[obj.position]
            # the whole shape lies inside its cell, so the position name is unambiguous
            assert column / 3 <= obj.center[0] - obj.radius and obj.center[0] + obj.radius <= (column + 1) / 3
            assert row / 3 <= obj.center[1] - obj.radius and obj.center[1] + obj.radius <= (row + 1) / 3
    assert counts == {1, 2, 3}


def test_scene_json_round_trip() -> None:
    scene = sample_scene(42, n_objects=3)
    assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_rendered_object_has_its_colour_at_its_centre() -> None:
    for seed in range(40):
        scene = sample_scene(seed, n_objects=1)
        obj = scene.objects[0]
        image = np.asarray(render_scene(scene, size=224)).astype(int)
        x, y = int(obj.center[0] * 224), int(obj.center[1] * 224)
        assert np.abs(image[y, x] - np.array(obj.rgb)).max() <= 2, (seed, obj)
        # the pixel is nearer to its own palette colour than to any other
        nearest = min(COLORS, key=lambda c: np.abs(image[y, x] - np.array(COLORS[c])).sum())
        assert nearest == obj.color


@pytest.mark.parametrize("seed", list(SEEDS))
def test_description_parses_back_to_the_scene(seed: int) -> None:
    scene = sample_scene(seed)
    for style_seed in range(3):
        text = describe(scene, random.Random(style_seed))
        assert parse_description(text) == scene_objects(scene), text
        assert parse_background(text) == (scene.background.color, scene.background.texture)


def test_descriptions_are_caption_length(smollm2_tokenizer) -> None:
    lengths = [
        len(smollm2_tokenizer(describe(sample_scene(s), random.Random(s)))["input_ids"]) for s in range(200)
    ]
    assert min(lengths) >= 20 and max(lengths) <= 60


def test_existence_questions_are_balanced_and_correct() -> None:
    rng = random.Random(0)
    answers = []
    for seed in SEEDS:
        scene = sample_scene(seed)
        turn = exist_turn(scene, rng)
        question_object = parse_description(turn.question)[0]
        present = scene.has(question_object.color, question_object.shape)
        assert parse_yes_no(turn.answer) is present
        answers.append(present)
    assert 0.4 < sum(answers) / len(answers) < 0.6


def test_hard_negatives_share_a_colour_or_shape() -> None:
    rng = random.Random(1)
    shared = 0
    negatives = 0
    for seed in SEEDS:
        scene = sample_scene(seed)
        turn = exist_turn(scene, rng, present=False)
        asked = parse_description(turn.question)[0]
        negatives += 1
        shared += any(o.color == asked.color or o.shape == asked.shape for o in scene.objects)
    assert shared / negatives > 0.6


def test_count_answers() -> None:
    for seed in range(30):
        scene = sample_scene(seed)
        assert parse_count(count_turn(scene, random.Random(seed)).answer) == len(scene.objects)


def test_conversation_answers_agree_with_the_scene() -> None:
    rng = random.Random(3)
    for seed in range(100):
        scene = sample_scene(seed)
        for turn in conversation(scene, rng, n_turns=6):
            if turn.task == "color":
                assert parse_color(turn.answer) == scene.objects[0].color
            elif turn.task == "shape":
                assert parse_shape(turn.answer) == scene.objects[0].shape
            elif turn.task == "position":
                mention = parse_description(turn.answer)[0]
                assert any(mention == ParsedObject(o.shape, o.color, None, o.position) for o in scene.objects)


def test_parser_on_free_text() -> None:
    assert parse_color("The shape is Violet.") == "purple"
    assert parse_shape("I see two Stars here") == "star"
    assert parse_yes_no("No, there is no green triangle in the image.") is False
    assert parse_yes_no("Yes.") is True
    assert parse_yes_no("I cannot tell.") is None
    assert parse_count("There are 3 shapes") == 3
    assert parse_count("a single shape") == 1
    text = "A big blue square sits in the upper right, and a tiny pink circle is in the middle. No red star."
    assert parse_description(text) == [
        ParsedObject("square", "blue", "large", "top right"),
        ParsedObject("circle", "pink", "small", "center"),
    ]
    assert parse_description("A photo of a cat on a sofa.") == []
    assert parse_shape("nothing here") is None and parse_color("nothing here") is None


def test_vocabulary_is_covered() -> None:
    for color in COLORS:
        assert parse_color(f"It is {color}.") == color
    for shape in SHAPES:
        assert parse_shape(f"It is a {shape}.") == shape
        assert parse_shape(f"Two {shape}s.") == shape
