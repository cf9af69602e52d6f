"""Figures of the findings a reviewer asks for: the image effect per layer against each null, and the
information probes per layer. Both draw summary.json's own entries (``image_effect``, ``probes``), so they
can be redrawn from the file; the dataset's stages are shaded and its key layers marked."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, mark_key_layers, new_figure, shade_stages
from evolens.vocabulary import SERIES_COLORS


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _panels(n_panels: int, width: float = 4.2, height: float = 3.0) -> tuple[Figure, list[Axes]]:
    columns = min(3, n_panels)
    rows = int(np.ceil(n_panels / columns))
    figure = new_figure(max(width * columns, 8.0), height * rows + 0.6)  # room for the title
    return figure, [figure.add_subplot(rows, columns, i + 1) for i in range(n_panels)]


def _layer_axis(axes: Axes, layers: list[int], stages: StageResult | None) -> None:
    if stages is not None:
        shade_stages(axes, stages, alpha=0.08)
        mark_key_layers(axes, stages, text=False)
    axes.set_xlabel("layer")
    axes.set_xlim(min(layers) - 0.5, max(layers) + 0.5)


def plot_image_effect(effect: dict[str, Any], stages: StageResult | None = None) -> Figure:
    """One panel per metric: the mean paired difference real - null per layer, one line per null
    condition with its simultaneous band; 0 (no image effect) dashed. Conditions and attributes are drawn
    in name order, each with the colour the report gives it."""
    conditions = effect["conditions"]
    with figure_style():
        figure, panels = _panels(len(effect["metrics"]))
        for axes, key in zip(panels, effect["metrics"], strict=True):
            entry = next(iter(conditions.values()))["metrics"][key]
            _layer_axis(axes, entry["layers"], stages)
            axes.axhline(0.0, color="#444444", lw=0.8, ls="--")
            for index, (name, condition) in enumerate(sorted(conditions.items())):
                curve = condition["metrics"][key]
                x, colour = np.asarray(curve["layers"]), SERIES_COLORS[index % len(SERIES_COLORS)]
                axes.plot(x, _array(curve["mean"]), color=colour, lw=1.6, label=f"real - {name}")
                axes.fill_between(
                    x, _array(curve["low"]), _array(curve["high"]), color=colour, alpha=0.2, lw=0
                )
            axes.set_ylabel(f"Δ {entry['label']}")
        handles, labels = panels[0].get_legend_handles_labels()
        shown = [(h, label) for h, label in zip(handles, labels, strict=True) if label.startswith("real")]
        figure.legend(*zip(*shown, strict=True), loc="outside lower center", ncol=len(shown), fontsize=8)
        figure.suptitle(
            f"Image effect per layer: real - null, mean over tokens (bands: {effect['band']}, images "
            "resampled)",
            fontsize=10,
        )
    return figure


def plot_probes(probes: dict[str, Any], stages: StageResult | None = None) -> Figure:
    """One panel per prompt: held-out probe accuracy per layer for each attribute with its interval, and
    the attribute's chance level dotted; the asked attribute drawn thickest."""
    prompts = [entry for entry in probes["prompts"] if "attributes" in entry]
    with figure_style():
        figure, panels = _panels(max(1, len(prompts)), width=4.8)
        for axes, entry in zip(panels, prompts, strict=False):
            drawn = False
            for index, (name, probe) in enumerate(sorted(entry["attributes"].items())):
                if "accuracy" not in probe:
                    continue
                if not drawn:
                    _layer_axis(axes, probe["layers"], stages)
                    drawn = True
                x, colour = np.asarray(probe["layers"]), SERIES_COLORS[index % len(SERIES_COLORS)]
                width = 2.2 if probe["role"] == "asked" else 1.4
                style = "-" if probe["role"] in ("asked", "control") else (0, (4, 2))
                label = f"{name} ({probe['role']})"
                axes.plot(x, probe["accuracy"], color=colour, lw=width, ls=style, label=label)
                axes.fill_between(x, probe["low"], probe["high"], color=colour, alpha=0.15, lw=0)
                axes.axhline(probe["chance"], color=colour, lw=0.9, ls=":")
            axes.set_ylim(0, 1.02)
            axes.set_ylabel("held-out accuracy")
            prompt = entry["prompt"] if len(entry["prompt"]) <= 40 else entry["prompt"][:39] + "…"
            axes.set_title(f"“{prompt}” (step {entry['step']}, {entry['n_images']} images)", fontsize=9)
            lines = [line for line in axes.get_lines() if not str(line.get_label()).startswith("_")]
            axes.legend(handles=lines, fontsize=7, loc="lower right")
        figure.suptitle(
            "What each layer knows: linear probes on held-out images (bands: Wilson 95%; dotted: chance)",
            fontsize=10,
        )
    return figure
