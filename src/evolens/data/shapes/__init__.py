"""The shapes world: deterministic synthetic scenes, their images, instruction data and a text parser.

``sample_scene(seed)`` -> ``Scene`` (ground truth) -> ``render_scene`` (PIL image) and ``text``
(captions, questions); ``evolens.data.shapes.parse`` reads generated text back into objects and answers.
"""

from evolens.data.shapes.parse import (
    ParsedObject,
    parse_background,
    parse_color,
    parse_count,
    parse_description,
    parse_shape,
    parse_yes_no,
)
from evolens.data.shapes.render import render_scene
from evolens.data.shapes.world import (
    BACKGROUND_COLORS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    Background,
    Scene,
    ShapeObject,
    sample_scene,
)

__all__ = [
    "BACKGROUND_COLORS",
    "COLORS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "Background",
    "ParsedObject",
    "Scene",
    "ShapeObject",
    "parse_background",
    "parse_color",
    "parse_count",
    "parse_description",
    "parse_shape",
    "parse_yes_no",
    "render_scene",
    "sample_scene",
]
