"""Shared look of every evolens figure, and deterministic PNG + SVG output.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no global backend state). The
colours and labels the figures share with the report (stages, key layers, token kinds, series) are plain
constants in ``evolens.vocabulary``; this module holds what only matplotlib needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.analysis.stages import StageResult
from evolens.vocabulary import KEY_LAYER_COLORS, STAGE_ALPHA, STAGE_COLORS, STAGE_LABELS, visible_token

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H")

RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "evolens",
    "svg.fonttype": "none",
    "image.interpolation": "nearest",
    "text.parse_math": False,  # a prompt like "worth $5 or $10?" is text, never mathtext
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply evolens' rc settings while a figure is built and saved."""
    with mpl.rc_context(RC), warnings.catch_warnings():  # type: ignore[arg-type]
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        yield


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure: Figure, directory: Path, name: str) -> list[Path]:
    """Write ``name.png`` (150 dpi) and ``name.svg`` into ``directory``; byte-identical across runs."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.svg"]
    with figure_style():
        figure.savefig(paths[0], dpi=150, metadata={"Software": None})
        figure.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def token_label(token: str, width: int = 14) -> str:
    """``visible_token(token)`` cut to ``width`` characters (with "…")."""
    text = visible_token(token)
    return text[: width - 1] + "…" if len(text) > width else text


def shade_stages(axes: Axes, stages: StageResult, offset: float = 0.0, alpha: float = STAGE_ALPHA) -> None:
    """Tint each stage's layers on a layer axis (x = lens layer) and name the stages in a legend."""
    for stage in stages.stages:
        axes.axvspan(
            stage.start - 0.5 + offset,
            stage.end + 0.5 + offset,
            color=STAGE_COLORS[stage.name],
            alpha=alpha,
            lw=0,
            label=f"{STAGE_LABELS[stage.name]} ({stage.span})",
        )


def mark_key_layers(axes: Axes, stages: StageResult, text: bool = True) -> None:
    """Dashed lines at the critical layer and at each mutation layer, named above the axes."""
    if stages.critical_layer is not None:
        critical = KEY_LAYER_COLORS["critical"]
        axes.axvline(stages.critical_layer, color=critical, ls="--", lw=1)
        if text:
            _name_line(axes, stages.critical_layer, f"critical {stages.critical_layer}", critical)
    mutation = KEY_LAYER_COLORS["mutation"]
    for layer in stages.mutation_layers:
        axes.axvline(layer, color=mutation, ls=":", lw=1.2)
    if text and stages.mutation_layer is not None:
        _name_line(axes, stages.mutation_layer, f"mutation {stages.mutation_layer}", mutation)


def _name_line(axes: Axes, x: float, text: str, color: str) -> None:
    axes.annotate(
        text,
        (x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(0, 2),
        textcoords="offset points",
        fontsize=8,
        color=color,
        ha="center",
        va="bottom",
    )


def layer_ticks(n_layers: int, start: int = 0) -> list[int]:
    """Tick positions for a 0..L (or start..L) axis: every layer up to 32, then every 2nd or 4th."""
    step = 1 if n_layers <= 32 else 2 if n_layers <= 64 else 4
    return list(range(start, n_layers + 1, step))
