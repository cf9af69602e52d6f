"""Figure of the mutation-hallucination analysis: per-layer curves of faithful vs hallucinated words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evolens.plots.style import figure_style, save_figure


def word_curves_figure(report: dict[str, Any], out_stem: Path) -> list[Path]:
    """Mean JSD(p_{l-1}, p_l) and mean p_l(emitted word) per lens layer for both groups, with the critical
    and mutation layers marked; written as PNG and SVG next to ``out_stem``."""
    stages = report["stages"]
    with figure_style():
        figure = _word_curves(report, stages)
    return save_figure(figure, out_stem.parent, out_stem.name)


def _word_curves(report: dict[str, Any], stages: dict[str, Any]) -> Figure:
    figure = Figure(figsize=(11, 3.6), layout="tight")
    axes = figure.subplots(1, 2)
    colors = {"faithful": "#4c72b0", "hallucinated": "#c44e52"}
    for group, curves in report["curves"].items():
        if not curves["prob"]:
            continue
        jsd = np.asarray(curves["jsd_next"])
        axes[0].plot(np.arange(1, len(jsd) + 1), jsd, color=colors[group], label=group)
        axes[1].plot(np.arange(len(curves["prob"])), curves["prob"], color=colors[group], label=group)
    for axis in axes:
        for key, style in (("critical_layer", "--"), ("mutation_layer", ":")):
            if stages.get(key) is not None:
                axis.axvline(stages[key], color="gray", ls=style, lw=1, label=key.replace("_", " "))
        axis.set_xlabel("lens layer")
    axes[0].set_title("JSD(p_{l-1}, p_l) of the word's step")
    axes[1].set_title("p_l(emitted word)")
    axes[1].legend(fontsize=8)
    counts = f"{report['n_words']} object/colour words, {report['n_hallucinated']} hallucinated"
    figure.suptitle(f"{report.get('model', '?')}: {counts}")
    return figure
