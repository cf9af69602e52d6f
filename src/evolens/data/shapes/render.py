"""Drawing a ``Scene`` with PIL: drawn at 4x resolution and downsampled, so edges are anti-aliased."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from evolens.data.shapes.world import BACKGROUND_COLORS, RGB, Background, Scene, ShapeObject

SUPERSAMPLE = 4
DEFAULT_SIZE = 224


def render_scene(scene: Scene, size: int = DEFAULT_SIZE) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND_COLORS[scene.background.color])
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, scene.background, big)
    for obj in scene.objects:
        if obj.shape == "circle":
            _circle(draw, obj, big)
        else:
            draw.polygon(shape_outline(obj, big), fill=obj.rgb)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def shape_outline(obj: ShapeObject, side: int) -> list[tuple[float, float]]:
    """Polygon vertices of a non-circle shape, in pixels of a ``side`` x ``side`` canvas."""
    cx, cy, r = obj.center[0] * side, obj.center[1] * side, obj.radius * side
    if obj.shape == "square":
        half = r / math.sqrt(2)
        return [
            (cx - half, cy - half),
            (cx + half, cy - half),
            (cx + half, cy + half),
            (cx - half, cy + half),
        ]
    if obj.shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if obj.shape == "triangle":
        return _regular(cx, cy + 0.2 * r, r, 3)
    if obj.shape == "star":
        outer = _regular(cx, cy + 0.08 * r, r, 5)
        inner = _regular(cx, cy + 0.08 * r, 0.42 * r, 5, offset=math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    raise ValueError(f"unknown shape '{obj.shape}'")


def _regular(cx: float, cy: float, r: float, n: int, offset: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a regular n-gon with one vertex pointing up (before ``offset`` radians)."""
    angles = [-math.pi / 2 + offset + 2 * math.pi * k / n for k in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def _circle(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: int) -> None:
    cx, cy, r = obj.center[0] * side, obj.center[1] * side, obj.radius * side * 0.9
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=obj.rgb)


def _shade(rgb: RGB, delta: int) -> RGB:
    """A slightly lighter (dark backgrounds) or darker (light backgrounds) tone of ``rgb``."""
    sign = 1 if sum(rgb) < 3 * 128 else -1
    return tuple(min(255, max(0, c + sign * delta)) for c in rgb)  # type: ignore[return-value]


def _draw_texture(draw: ImageDraw.ImageDraw, background: Background, side: int) -> None:
    tone = _shade(BACKGROUND_COLORS[background.color], 28)
    if background.texture == "striped":
        step = side // 14
        for x in range(-side, side, step):
            draw.line([(x, 0), (x + side, side)], fill=tone, width=step // 3)
    elif background.texture == "dotted":
        step = side // 16
        dot = step // 6
        for y in range(step // 2, side, step):
            for x in range(step // 2, side, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=tone)
