"""The study's heatmap: generated tokens x layers, consecutive-layer JSD (or the paper's JS)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from evolens.analysis.single_token import HeatmapData
from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, layer_ticks, new_figure, token_label
from evolens.vocabulary import KEY_LAYER_COLORS

MAX_ANNOTATED_CELLS = 40 * 40


def cell_text(value: float) -> str:
    """A value short enough for a cell: 2 decimals, or 1-digit scientific notation below 0.005."""
    if value == 0:
        return "0"
    return f"{value:.2f}" if abs(value) >= 0.005 else f"{value:.0e}".replace("e-0", "e-")


def plot_heatmap(data: HeatmapData, stages: StageResult | None = None, title: str | None = None) -> Figure:
    """Rows = the page's generated tokens (top to bottom), columns = layers 1..L.

    Column l shows D(p_{l-1}, p_l), the change made by layer l. Values are written in the cells when
    the page is small enough to read them. ``stages`` adds lines after the critical layer's column and
    before the first mutation layer's column.
    """
    n_rows, n_cols = data.values.shape
    with figure_style():
        figure = new_figure(max(7.0, 0.42 * n_cols + 2.5), max(2.5, 0.26 * n_rows + 1.6))
        axes = figure.add_subplot()
        image = axes.imshow(data.values, cmap="Purples", vmin=0.0, vmax=data.vmax, aspect="auto")
        axes.grid(False)
        axes.set_yticks(range(n_rows), [token_label(t) for t in data.tokens], fontsize=8)
        ticks = [t for t in layer_ticks(int(data.layers[-1]), start=int(data.layers[0]))]
        axes.set_xticks([t - int(data.layers[0]) for t in ticks], [str(t) for t in ticks], fontsize=8)
        axes.set_xlabel("layer l (cell: divergence between the outputs of layers l-1 and l)")
        axes.set_ylabel(f"generated token (steps {data.steps[0]}-{data.steps[-1]})")
        if n_rows * n_cols <= MAX_ANNOTATED_CELLS:
            _annotate(axes, data)
        if stages is not None:
            _stage_lines(axes, stages, int(data.layers[0]))
        colorbar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
        colorbar.set_label(data.colorbar)
        default = f"{data.sample_id}: " + (
            "the paper's JS (raw lens), scaled per layer"
            if data.metric == "paper_js"
            else "consecutive-layer JSD"
        )
        if data.metric != "paper_js" and data.normalization == "per-layer":
            default += ", scaled per layer"
        axes.set_title(title or default)
    return figure


def _annotate(axes, data: HeatmapData) -> None:
    size = 6 if data.values.shape[1] > 24 else 7
    for (row, col), value in np.ndenumerate(data.values):
        shown = data.raw[row, col] if data.normalization == "none" else value
        color = "white" if value > 0.6 * data.vmax else "black"
        axes.text(
            col,
            row,
            cell_text(float(shown)),
            ha="center",
            va="center",
            fontsize=size,
            color=color,
            in_layout=False,
        )


def _stage_lines(axes, stages: StageResult, first_layer: int) -> None:
    if stages.critical_layer is not None:
        x = stages.critical_layer - first_layer + 0.5
        axes.axvline(x, color=KEY_LAYER_COLORS["critical"], lw=1.5, ls="--")
        axes.text(x, -0.7, f" critical {stages.critical_layer}", fontsize=8, va="bottom")
    if stages.mutation_layer is not None:
        x = stages.mutation_layer - first_layer - 0.5
        axes.axvline(x, color=KEY_LAYER_COLORS["mutation"], lw=1.5, ls="--")
        axes.text(
            x,
            -0.7,
            f" mutation {stages.mutation_layer}",
            fontsize=8,
            va="bottom",
            color=KEY_LAYER_COLORS["mutation"],
        )
