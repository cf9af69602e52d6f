"""The causal experiment's figure (``causal.json``): per effect measure, the mean effect of each method's
intervention per layer window with its cluster-bootstrap interval over images; 0 (no effect) dashed, and
the lens-based critical and mutation layers, when given, as vertical lines."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evolens.plots.style import figure_style, new_figure
from evolens.vocabulary import SERIES_COLORS

MEASURE_LABELS = {
    "logprob": "Δ log p(target)",
    "logit_diff": "Δ logit(target) - logit(alternatives)",
}
METHOD_LABELS = {
    "knockout": "attention to the image knocked out",
    "ablate": "image tokens ablated from this layer on",
    "patch": "clean state patched into the corrupted run",
}


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def window_centres(windows: list[list[int]]) -> np.ndarray:
    """(n_windows,) the layer each window is drawn at: its first layer (ablate: the layer it starts at)."""
    return np.array([window[0] for window in windows], dtype=np.float64)


def plot_causal(causal: dict[str, Any], key_layers: dict[str, int | None] | None = None) -> Figure:
    """One panel per measure; one line per method with its band (x = the window's first layer)."""
    methods = causal["methods"]
    measures = [m for m in MEASURE_LABELS if any(m in r["effects"] for r in methods.values())]
    with figure_style():
        figure = new_figure(5.2 * len(measures), 3.8)
        panels = [figure.add_subplot(1, len(measures), i + 1) for i in range(len(measures))]
        for axes, measure in zip(panels, measures, strict=True):
            axes.axhline(0.0, color="#444444", lw=0.8, ls="--")
            for index, (name, result) in enumerate(sorted(methods.items())):
                effect = result["effects"].get(measure)
                if not effect or effect.get("n_samples", 0) == 0:
                    continue
                x, colour = window_centres(result["windows"]), SERIES_COLORS[index % len(SERIES_COLORS)]
                axes.plot(
                    x,
                    _array(effect["mean"]),
                    color=colour,
                    lw=1.6,
                    marker="o",
                    ms=3,
                    label=METHOD_LABELS.get(name, name),
                )
                axes.fill_between(
                    x, _array(effect["low"]), _array(effect["high"]), color=colour, alpha=0.2, lw=0
                )
            for label, layer in (key_layers or {}).items():
                if layer is not None:
                    axes.axvline(layer, color="#777777", lw=0.8, ls=":")
                    axes.annotate(
                        label,
                        (layer, 1.0),
                        xycoords=("data", "axes fraction"),
                        fontsize=7,
                        ha="left",
                        va="top",
                        rotation=90,
                        color="#555555",
                    )
            axes.set_xlabel("first layer of the window")
            axes.set_ylabel(MEASURE_LABELS[measure])
        handles, labels = panels[0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8)
        settings = causal.get("settings", {})
        figure.suptitle(
            f"Causal effect per layer window ({settings.get('window', '?')} layers; patch from the real run "
            f"into '{settings.get('corrupt', '?')}'); mean over targets, 95% intervals over images",
            fontsize=10,
        )
    return figure
