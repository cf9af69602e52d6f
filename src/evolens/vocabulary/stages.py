"""The study's stages and key layers as the figures and the report name and colour them, and how a set of
layers is written ("layers 2-20", "3-5,9")."""

from __future__ import annotations

from collections.abc import Iterable

STAGE_NAMES = ("rapid_evolution", "stabilization", "mutation")
"""The three stages, shallow to deep (``evolens.analysis.stages``)."""
STAGE_LABELS = {
    "rapid_evolution": "rapid evolution",
    "stabilization": "stabilization",
    "mutation": "mutation",
}
STAGE_COLORS = {"rapid_evolution": "#3aa76d", "stabilization": "#4682b4", "mutation": "#9467bd"}
STAGE_ALPHA = 0.08
"""Opacity of the stage tints on layer axes (the figures and the report use the same colours and opacity)."""
KEY_LAYER_COLORS = {"critical": "#000000", "mutation": STAGE_COLORS["mutation"]}


def stage_label(name: str) -> str:
    """A stage's name for people: "rapid evolution"; an unknown name with its underscores as spaces."""
    return STAGE_LABELS.get(name, name.replace("_", " "))


def layer_span(start: int, end: int) -> str:
    """ "layers 12-26", or "layer 30" when ``start == end``."""
    return f"layer {start}" if start == end else f"layers {start}-{end}"


def format_layers(layers: Iterable[int]) -> str:
    """{3, 4, 5, 9} -> "3-5,9"."""
    ordered = sorted(set(layers))
    runs: list[str] = []
    start = previous = None
    for index in ordered:
        if previous is not None and index == previous + 1:
            previous = index
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = index
    if start is not None:
        runs.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(runs)
