"""The logit-lens grid: the top-1 token of every layer (rows) at every generated step (columns)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from evolens.analysis.single_token import LensGrid
from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, layer_ticks, new_figure, token_label
from evolens.vocabulary import KEY_LAYER_COLORS


def plot_lens_grid(grid: LensGrid, stages: StageResult | None = None, title: str | None = None) -> Figure:
    """Cells coloured by the top-1 probability; bold text where the top-1 is the token finally emitted.

    Layer 0 is at the bottom, the last layer at the top; columns are labelled with the emitted tokens.
    """
    n_layers = grid.top_ids.shape[0] - 1
    n_steps = grid.top_ids.shape[1]
    with figure_style():
        figure = new_figure(max(6.0, 0.78 * n_steps + 2.2), max(4.0, 0.2 * (n_layers + 1) + 2.0))
        axes = figure.add_subplot()
        image = axes.imshow(grid.top_probs, cmap="Blues", vmin=0, vmax=1, aspect="auto", origin="lower")
        axes.grid(False)
        final = grid.top_ids[-1]
        for (layer, step), label in np.ndenumerate(grid.labels):
            is_final = grid.top_ids[layer, step] == final[step]
            axes.text(
                step,
                layer,
                token_label(label, width=9),
                ha="center",
                va="center",
                fontsize=5.5,
                color="white" if grid.top_probs[layer, step] > 0.6 else "black",
                fontweight="bold" if is_final else "normal",
                in_layout=False,
            )
        axes.set_xticks(
            range(n_steps),
            [token_label(t, width=10) for t in grid.emitted],
            rotation=60,
            ha="right",
            fontsize=8,
        )
        ticks = layer_ticks(n_layers) if n_layers <= 16 else list(range(0, n_layers + 1, 2))
        axes.set_yticks(ticks, [str(t) for t in ticks], fontsize=8)
        if stages is not None and stages.critical_layer is not None:
            axes.axhline(stages.critical_layer - 0.5, color=KEY_LAYER_COLORS["critical"], lw=1.2, ls="--")
        if stages is not None and stages.mutation_layer is not None:
            axes.axhline(stages.mutation_layer - 0.5, color=KEY_LAYER_COLORS["mutation"], lw=1.2, ls="--")
        axes.set_xlabel(f"emitted token (steps {grid.steps[0]}-{grid.steps[-1]})")
        axes.set_ylabel("layer (0 = input embeddings)")
        colorbar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
        colorbar.set_label("top-1 probability")
        axes.set_title(
            title or f"{grid.sample_id}: logit lens, top-1 token per layer (bold = the final top-1)"
        )
    return figure
