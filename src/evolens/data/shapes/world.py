"""The shapes world: scenes of 1-3 coloured shapes on a background, sampled deterministically from a seed.

A scene is plain data (``Scene``, ``ShapeObject``, ``Background``), JSON-serialisable with ``to_dict`` /
``from_dict``. Objects sit in distinct cells of a 3x3 grid and no two share both colour and shape, so
"the red circle" always names one object. Rendering lives in ``evolens.data.shapes.render``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

RGB = tuple[int, int, int]

# Object colours: saturated, far apart, and named the way a person would name them.
COLORS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 35),
    "green": (40, 160, 65),
    "blue": (35, 85, 215),
    "purple": (135, 55, 185),
    "pink": (245, 125, 185),
    "brown": (125, 75, 35),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
# Radius (centre to the farthest point) as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.075, "medium": 0.11, "large": 0.145}
# 3x3 grid cells, named as a person reads them: (row, column) -> name.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}
# Backgrounds are neutral so that every object colour stands out on every background.
BACKGROUND_COLORS: dict[str, RGB] = {
    "white": (248, 248, 246),
    "light gray": (200, 200, 200),
    "dark gray": (75, 75, 78),
    "black": (18, 18, 20),
    "beige": (232, 220, 195),
}
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted")

COLOR_JITTER = 14  # per-channel +- jitter of an object's RGB, so the name covers a small region
MAX_OBJECTS = 3


@dataclass(frozen=True)
class ShapeObject:
    """One shape in a scene.

    Attributes:
        shape: one of ``SHAPES``.
        color: one of ``COLORS`` (its name).
        size: one of ``SIZES``.
        position: one of ``POSITIONS`` (the grid cell holding the centre).
        center: (x, y) of the centre as fractions of the image side, x to the right, y down.
        radius: centre-to-tip radius as a fraction of the image side.
        rgb: the exact fill colour (``COLORS[color]`` plus a small jitter).
    """

    shape: str
    color: str
    size: str
    position: str
    center: tuple[float, float]
    radius: float
    rgb: RGB

    @property
    def name(self) -> str:
        """'red circle': colour and shape, which identify the object within its scene."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Background:
    """The scene's background: a neutral colour (one of ``BACKGROUND_COLORS``) and a texture."""

    color: str
    texture: str

    @property
    def phrase(self) -> str:
        """'plain white', 'striped light gray', 'dotted black'."""
        return f"{self.texture} {self.color}"


@dataclass(frozen=True)
class Scene:
    """A shapes-world scene: its seed, background and objects in reading order (top-left first)."""

    seed: int
    background: Background
    objects: tuple[ShapeObject, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists instead of tuples)."""
        return {
            "seed": self.seed,
            "background": asdict(self.background),
            "objects": [{**asdict(o), "center": list(o.center), "rgb": list(o.rgb)} for o in self.objects],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Inverse of ``to_dict``."""
        objects = tuple(
            ShapeObject(**{**o, "center": tuple(o["center"]), "rgb": tuple(o["rgb"])})
            for o in data["objects"]
        )
        return cls(int(data["seed"]), Background(**data["background"]), objects)

    def has(self, color: str, shape: str) -> bool:
        """Whether an object of this colour and shape is in the scene."""
        return any(o.color == color and o.shape == shape for o in self.objects)


def reading_order(position: str) -> tuple[int, int]:
    """Sort key: top row first, then left to right."""
    return POSITIONS[position]


def sample_scene(seed: int, n_objects: int | None = None) -> Scene:
    """The scene for ``seed`` (1-3 objects unless ``n_objects`` is given); same seed, same scene."""
    rng = random.Random(seed)
    n = n_objects if n_objects is not None else rng.randint(1, MAX_OBJECTS)
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects, not {n}")
    background = Background(rng.choice(list(BACKGROUND_COLORS)), rng.choice(TEXTURES))
    cells = rng.sample(list(POSITIONS), n)
    used: set[tuple[str, str]] = set()
    objects = []
    for position in sorted(cells, key=reading_order):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        while (color, shape) in used:
            color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        used.add((color, shape))
        size = rng.choice(list(SIZES))
        objects.append(_place(rng, shape, color, size, position))
    return Scene(seed, background, tuple(objects))


def _place(rng: random.Random, shape: str, color: str, size: str, position: str) -> ShapeObject:
    row, column = POSITIONS[position]
    radius = SIZES[size] * rng.uniform(0.93, 1.07)
    cell = 1 / 3
    slack = max(0.0, cell / 2 - radius - 0.012)  # the shape stays inside its cell
    center = (
        round((column + 0.5) * cell + rng.uniform(-slack, slack), 4),
        round((row + 0.5) * cell + rng.uniform(-slack, slack), 4),
    )
    base = COLORS[color]
    rgb = tuple(min(255, max(0, c + rng.randint(-COLOR_JITTER, COLOR_JITTER))) for c in base)
    return ShapeObject(shape, color, size, position, center, round(radius, 4), rgb)  # type: ignore[arg-type]
