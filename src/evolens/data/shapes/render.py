"""Drawing a ``Scene`` with PIL: drawn at ``supersample`` x resolution and downsampled (anti-aliased).

``RenderStyle`` says how: the default is the reference renderer (4x supersampling, Lanczos). Other styles
draw the same scene differently (no or other anti-aliasing, objects scaled, rotated or shifted, a tinted
background, other texture spacing) without changing what a description of the scene says, so a model can
be trained and tested on drawings it has never seen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from evolens.data.shapes.world import BACKGROUND_COLORS, RGB, Background, Scene, ShapeObject

SUPERSAMPLE = 4
DEFAULT_SIZE = 224
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class RenderStyle:
    """How a scene is drawn; ``RenderStyle()`` is the reference renderer.

    Attributes:
        supersample: drawing resolution over the output size (1 = no anti-aliasing).
        resample: the downsampling filter, a key of ``RESAMPLE``.
        scale: object radius multiplier (1 = the scene's radius).
        rotation: degrees every polygon is turned about its centre (circles are unaffected).
        shift: (dx, dy) added to every object centre, as fractions of the side.
        tint: (r, g, b) added to the background colour (clipped to 0..255).
        texture_step: spacing multiplier of stripes and dots.
        texture_contrast: how far the texture tone is from the background (28 in the reference).
    """

    supersample: int = SUPERSAMPLE
    resample: str = "lanczos"
    scale: float = 1.0
    rotation: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    tint: tuple[int, int, int] = (0, 0, 0)
    texture_step: float = 1.0
    texture_contrast: int = 28

    def __post_init__(self) -> None:
        if self.supersample < 1 or self.resample not in RESAMPLE:
            raise ValueError(f"bad render style: supersample {self.supersample}, resample '{self.resample}'")


REFERENCE_STYLE = RenderStyle()


def random_style(rng: random.Random) -> RenderStyle:
    """A training style: supersampling 1, 2 or 4 with Lanczos/bilinear/bicubic downsampling, objects scaled
    by 0.9-1.1, turned by up to 12 degrees, shifted by up to 1.5% of the side, a background tint of up to
    12 per channel, texture spacing 0.8-1.25 and contrast 16-40."""
    return RenderStyle(
        supersample=rng.choice((1, 2, 4)),
        resample=rng.choice(("lanczos", "bilinear", "bicubic")),
        scale=rng.uniform(0.9, 1.1),
        rotation=rng.uniform(-12.0, 12.0),
        shift=(rng.uniform(-0.015, 0.015), rng.uniform(-0.015, 0.015)),
        tint=(rng.randint(-12, 12), rng.randint(-12, 12), rng.randint(-12, 12)),
        texture_step=rng.uniform(0.8, 1.25),
        texture_contrast=rng.randint(16, 40),
    )


def render_scene(scene: Scene, size: int = DEFAULT_SIZE, style: RenderStyle = REFERENCE_STYLE) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels, drawn in ``style``."""
    big = size * style.supersample
    background = _clip(
        tuple(c + t for c, t in zip(BACKGROUND_COLORS[scene.background.color], style.tint, strict=True))
    )
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, scene.background, background, big, style)
    for obj in scene.objects:
        if obj.shape == "circle":
            _circle(draw, obj, big, style)
        else:
            draw.polygon(shape_outline(obj, big, style), fill=obj.rgb)
    if style.supersample == 1:
        return image
    return image.resize((size, size), RESAMPLE[style.resample])


def shape_outline(
    obj: ShapeObject, side: int, style: RenderStyle = REFERENCE_STYLE
) -> list[tuple[float, float]]:
    """Polygon vertices of a non-circle shape, in pixels of a ``side`` x ``side`` canvas."""
    cx, cy = (obj.center[0] + style.shift[0]) * side, (obj.center[1] + style.shift[1]) * side
    r = obj.radius * style.scale * side
    if obj.shape == "square":
        half = r / math.sqrt(2)
        points = [
            (cx - half, cy - half),
            (cx + half, cy - half),
            (cx + half, cy + half),
            (cx - half, cy + half),
        ]
    elif obj.shape == "diamond":
        points = [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    elif obj.shape == "triangle":
        points = _regular(cx, cy + 0.2 * r, r, 3)
    elif obj.shape == "star":
        outer = _regular(cx, cy + 0.08 * r, r, 5)
        inner = _regular(cx, cy + 0.08 * r, 0.42 * r, 5, offset=math.pi / 5)
        points = [p for pair in zip(outer, inner, strict=True) for p in pair]
    else:
        raise ValueError(f"unknown shape '{obj.shape}'")
    return _rotate(points, cx, cy, style.rotation) if style.rotation else points


def _regular(cx: float, cy: float, r: float, n: int, offset: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a regular n-gon with one vertex pointing up (before ``offset`` radians)."""
    angles = [-math.pi / 2 + offset + 2 * math.pi * k / n for k in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def _rotate(
    points: list[tuple[float, float]], cx: float, cy: float, degrees: float
) -> list[tuple[float, float]]:
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]


def _circle(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: int, style: RenderStyle) -> None:
    cx, cy = (obj.center[0] + style.shift[0]) * side, (obj.center[1] + style.shift[1]) * side
    r = obj.radius * style.scale * side * 0.9
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=obj.rgb)


def _clip(rgb: tuple[int, ...]) -> RGB:
    return tuple(min(255, max(0, c)) for c in rgb)  # type: ignore[return-value]


def _shade(rgb: RGB, delta: int) -> RGB:
    """A slightly lighter (dark backgrounds) or darker (light backgrounds) tone of ``rgb``."""
    sign = 1 if sum(rgb) < 3 * 128 else -1
    return _clip(tuple(c + sign * delta for c in rgb))


def _draw_texture(
    draw: ImageDraw.ImageDraw, background: Background, color: RGB, side: int, style: RenderStyle
) -> None:
    tone = _shade(color, style.texture_contrast)
    if background.texture == "striped":
        step = max(3, round(side // 14 * style.texture_step))
        for x in range(-side, side, step):
            draw.line([(x, 0), (x + side, side)], fill=tone, width=max(1, step // 3))
    elif background.texture == "dotted":
        step = max(4, round(side // 16 * style.texture_step))
        dot = max(1, step // 6)
        for y in range(step // 2, side, step):
            for x in range(step // 2, side, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=tone)
