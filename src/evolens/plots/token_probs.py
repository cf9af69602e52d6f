"""The paper's area chart: one generated token's probability, and its late-layer rivals', across layers."""

from __future__ import annotations

from matplotlib.figure import Figure

from evolens.analysis.single_token import CandidateCurves
from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, layer_ticks, mark_key_layers, new_figure, token_label
from evolens.vocabulary import SERIES_COLORS


def plot_token_probabilities(
    curves: CandidateCurves, stages: StageResult | None = None, title: str | None = None
) -> Figure:
    """Filled curves p_l(token) for l = 0..L, the emitted token first (drawn on top, with an edge).

    A rival's probability is 0 where it was outside the layer's top-k (see ``CandidateCurves``).
    """
    n_layers = int(curves.layers[-1])
    with figure_style():
        figure = new_figure(7.5, 4.2)
        axes = figure.add_subplot()
        order = list(range(len(curves.token_ids)))[::-1]
        for i in order:
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            first = i == 0
            label = token_label(curves.labels[i]) + (" (emitted)" if first else "")
            axes.fill_between(
                curves.layers,
                curves.probs[i],
                color=color,
                alpha=0.55 if first else 0.4,
                lw=0,
                label=label,
            )
            axes.plot(curves.layers, curves.probs[i], color=color, lw=1.6 if first else 0.8)
        if stages is not None:
            mark_key_layers(axes, stages)
        axes.set_xlim(0, n_layers)
        axes.set_ylim(0, 1.0)
        axes.set_xticks(layer_ticks(n_layers) if n_layers <= 16 else list(range(0, n_layers + 1, 5)))
        axes.set_xlabel("layer (0 = input embeddings)")
        axes.set_ylabel("probability")
        handles, labels = axes.get_legend_handles_labels()
        fills = [(h, lab) for h, lab in zip(handles, labels, strict=True) if not lab.startswith("_")]
        axes.legend(
            [h for h, _ in fills][::-1], [lab for _, lab in fills][::-1], loc="upper left", fontsize=9
        )
        emitted = token_label(curves.labels[0])
        axes.set_title(
            title or f"{curves.sample_id}, step {curves.step}: '{emitted}' and the late layers' candidates",
            pad=14,
        )
    return figure
