"""Per-layer means with bootstrap 95% bands: by token kind for one trace, or several traces overlaid.

Both take the JSON form of ``evolens.analysis.distribution.statistics_to_dict`` (metric -> {"layers",
"label", group -> {"mean", "low", "high", "n_tokens"}}), so they can be redrawn from summary.json; the
labels are ``evolens.vocabulary``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, mark_key_layers, new_figure, shade_stages
from evolens.vocabulary import KIND_COLORS, KIND_LABELS, LAYER_STATISTICS, METRICS, OVERVIEW, SERIES_COLORS


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _band(axes: Axes, x: np.ndarray, entry: dict, color: str, label: str) -> None:
    axes.plot(x, _array(entry["mean"]), color=color, lw=1.6, label=f"{label} (n={entry['n_tokens']})")
    axes.fill_between(x, _array(entry["low"]), _array(entry["high"]), color=color, alpha=0.2, lw=0)


def _grid(n_panels: int, width_per: float = 4.2, height_per: float = 3.0) -> tuple[Figure, list[Axes]]:
    columns = 2 if n_panels == 4 else min(3, n_panels)
    rows = int(np.ceil(n_panels / columns))
    figure = new_figure(width_per * columns, height_per * rows + 0.4)
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(n_panels)]
    return figure, axes


def plot_layer_statistics(
    statistics: dict,
    stages: StageResult | None = None,
    metrics: Sequence[str] = LAYER_STATISTICS,
    groups: Sequence[str] = ("all", "content", "function", "copied"),
    title: str = "",
) -> Figure:
    """One panel per metric: mean over tokens per layer with its 95% band, one line per token kind."""
    with figure_style():
        figure, panels = _grid(len(metrics))
        for axes, metric in zip(panels, metrics, strict=True):
            entry = statistics[metric]
            x = np.asarray(entry["layers"])
            if stages is not None:
                shade_stages(axes, stages)
                mark_key_layers(axes, stages, text=False)
            for group in groups:
                if group in entry and entry[group]["n_tokens"]:
                    _band(axes, x, entry[group], KIND_COLORS[group], KIND_LABELS[group])
            axes.set_xlabel("layer")
            axes.set_ylabel(entry["label"])
            axes.set_xlim(0, x[-1])
            if metric == "kl_last":  # layer 0 is often ~100 nats, the rest a few: keep both readable
                axes.set_yscale("symlog", linthresh=1.0)
                axes.set_ylim(bottom=0.0)  # KL >= 0; without it symlog pads below 0 with a -10^0 tick
        handles, labels = panels[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8)
        figure.suptitle(
            title or "Per-layer means over generated tokens (bands: 95% cluster-bootstrap CI over samples)"
        )
    return figure


def plot_comparison(
    entries: Sequence[tuple[str, dict, StageResult | None]],
    metrics: Sequence[str] = OVERVIEW,
    group: str = "all",
    title: str = "",
) -> Figure:
    """Several traces' curves overlaid per metric, each with its band and its critical/mutation layers.

    When the traces have different depths, the x axis is the relative depth l / L.
    """
    depths = {int(stats[metrics[0]]["layers"][-1]) for _, stats, _ in entries}
    relative = len(depths) > 1
    with figure_style():
        figure, panels = _grid(len(metrics))
        for axes, metric in zip(panels, metrics, strict=True):
            for index, (label, stats, stages) in enumerate(entries):
                color = SERIES_COLORS[index % len(SERIES_COLORS)]
                x = np.asarray(stats[metric]["layers"], dtype=np.float64)
                n_layers = float(stats[metric]["layers"][-1])
                if relative:
                    x = x / n_layers
                _band(axes, x, stats[metric][group], color, label)
                if stages is not None and stages.critical_layer is not None:
                    axes.axvline(
                        stages.critical_layer / (n_layers if relative else 1), color=color, ls="--", lw=1
                    )
                for layer in stages.mutation_layers if stages is not None else ():
                    axes.axvline(layer / (n_layers if relative else 1), color=color, ls=":", lw=1)
            axes.set_xlabel("relative depth l / L" if relative else "layer")
            axes.set_ylabel(stats[metric]["label"])
        handles, labels = panels[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
        figure.suptitle(
            title or "Per-layer means, 95% bands; dashed = critical layer, dotted = mutation layers"
        )
    return figure


def plot_kl_to_final(entries: Sequence[tuple[str, dict]], group: str = "all", title: str = "") -> Figure:
    """KL(last layer || layer) per layer of several traces (e.g. one inputs' trace under two lenses).

    ``entries``: (label, the ``kl_last`` entry of ``statistics_to_dict``); log y axis, layers 0..L-1 (the
    last layer is 0 by definition under every lens).
    """
    with figure_style():
        figure = new_figure(6.4, 4.0)
        axes = figure.add_subplot(1, 1, 1)
        for index, (label, entry) in enumerate(entries):
            x = np.asarray(entry["layers"][:-1], dtype=np.float64)
            values = entry[group]
            trimmed = {key: values[key][:-1] for key in ("mean", "low", "high")}
            _band(
                axes,
                x,
                {**trimmed, "n_tokens": values["n_tokens"]},
                SERIES_COLORS[index % len(SERIES_COLORS)],
                label,
            )
        axes.set_yscale("log")
        axes.set_xlabel("layer")
        axes.set_ylabel(METRICS["kl_last"].label)
        axes.legend(fontsize=8)
        figure.suptitle(title or "KL to the final distribution per layer (95% cluster-bootstrap bands)")
    return figure
