"""Render styles of the shapes world: the reference is unchanged, other styles draw the same scene."""

from __future__ import annotations

import random

import numpy as np
import pytest

from evolens.data.shapes import render_scene, sample_scene
from evolens.data.shapes.render import REFERENCE_STYLE, RenderStyle, random_style
from evolens.data.shapes.world import BACKGROUND_COLORS


def test_reference_style_is_the_default() -> None:
    for seed in (0, 5, 10_000_003):
        scene = sample_scene(seed)
        assert np.array_equal(
            np.asarray(render_scene(scene)), np.asarray(render_scene(scene, style=REFERENCE_STYLE))
        )


def test_every_training_style_keeps_each_object_colour_at_its_centre() -> None:
    rng = random.Random(0)
    for seed in range(40):
        scene, style = sample_scene(seed), random_style(rng)
        image = np.asarray(render_scene(scene, style=style)).astype(int)
        for obj in scene.objects:
            x = int((obj.center[0] + style.shift[0]) * 224)
            y = int((obj.center[1] + style.shift[1]) * 224)
            assert np.abs(image[y, x] - np.array(obj.rgb)).max() <= 2, (seed, obj, style)


def test_without_supersampling_every_pixel_is_a_drawn_colour() -> None:
    """supersample=1 means no anti-aliasing: no pixel blends an object into the background."""
    scene = sample_scene(7, n_objects=3)
    style = RenderStyle(supersample=1, texture_contrast=0)
    pixels = {tuple(p) for p in np.asarray(render_scene(scene, style=style)).reshape(-1, 3)}
    allowed = {obj.rgb for obj in scene.objects} | {BACKGROUND_COLORS[scene.background.color]}
    assert pixels <= allowed
    smooth = {tuple(p) for p in np.asarray(render_scene(scene)).reshape(-1, 3)}
    assert len(smooth - allowed) > 50, "the reference renderer anti-aliases edges"


def test_rotation_moves_polygon_edges_but_not_circles() -> None:
    scene = sample_scene(3, n_objects=1)
    turned = RenderStyle(rotation=10.0)
    changed = not np.array_equal(
        np.asarray(render_scene(scene)), np.asarray(render_scene(scene, style=turned))
    )
    assert changed == (scene.objects[0].shape != "circle")


def test_bad_style_is_refused() -> None:
    with pytest.raises(ValueError):
        RenderStyle(resample="sharpest")
