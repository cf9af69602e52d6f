"""Feature maps (t-SNE / PCA of hidden states) coloured by stage, and the per-layer separation curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from evolens.analysis.stages import StageResult
from evolens.plots.style import (
    MARKERS,
    STAGE_COLORS,
    STAGE_LABELS,
    figure_style,
    layer_span,
    mark_key_layers,
    new_figure,
    shade_stages,
)

METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}


def plot_feature_map(
    coordinates: np.ndarray,
    rows: pd.DataFrame,
    stages: StageResult,
    method: str,
    by_sample: bool = False,
    title: str = "",
) -> Figure:
    """Points (n, 2) coloured by the stage of their layer; with ``by_sample`` a marker per sample.

    ``rows`` (n rows) gives each point's ``layer`` and ``sample_id``. The legend gives each stage's layers.
    """
    stage_names = np.array([stages.stage_of(int(layer)) for layer in rows["layer"]])
    samples = list(dict.fromkeys(rows["sample_id"]))
    with figure_style():
        figure = new_figure(7.0, 6.0)
        axes = figure.add_subplot()
        for stage in stages.stages:
            in_stage = stage_names == stage.name
            if by_sample:
                for index, sample_id in enumerate(samples):
                    mask = in_stage & (rows["sample_id"].to_numpy() == sample_id)
                    axes.scatter(
                        coordinates[mask, 0],
                        coordinates[mask, 1],
                        s=28,
                        alpha=0.8,
                        color=STAGE_COLORS[stage.name],
                        marker=MARKERS[index % len(MARKERS)],
                        edgecolors="none",
                    )
            else:
                axes.scatter(
                    coordinates[in_stage, 0],
                    coordinates[in_stage, 1],
                    s=14,
                    alpha=0.7,
                    color=STAGE_COLORS[stage.name],
                    edgecolors="none",
                )
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color=STAGE_COLORS[s.name],
                label=f"{STAGE_LABELS[s.name]}: {layer_span(s)}",
            )
            for s in stages.stages
        ]
        if by_sample:
            handles += [
                Line2D(
                    [], [], ls="", marker=MARKERS[i % len(MARKERS)], color="0.4", label=str(sample_id)[:24]
                )
                for i, sample_id in enumerate(samples)
            ]
        axes.legend(handles=handles, fontsize=7, loc="best", ncol=2 if by_sample and len(samples) > 6 else 1)
        name = METHOD_NAMES.get(method, method)
        axes.set_xlabel(f"{name} 1")
        axes.set_ylabel(f"{name} 2")
        if method == "tsne":
            axes.set_xticklabels([])
            axes.set_yticklabels([])
        axes.set_title(title or f"{name} of hidden states")
    return figure


def plot_separation(separation: pd.DataFrame, stages: StageResult, title: str = "") -> Figure:
    """The per-layer separation measures of the answer-step states (see ``separation_by_layer``)."""
    with figure_style():
        figure = new_figure(7.5, 3.6)
        left = figure.add_subplot(1, 2, 1)
        right = figure.add_subplot(1, 2, 2)
        for axes in (left, right):
            shade_stages(axes, stages)
            mark_key_layers(axes, stages, text=False)
        left.plot(separation["layer"], separation["dispersion"], color="black", marker="o", ms=3)
        left.set_ylabel("spread between images\n(mean pairwise distance / mean norm)")
        right.plot(
            separation["layer"],
            separation["silhouette_by_image"],
            marker="o",
            ms=3,
            label="by image (layers l-1..l+1)",
        )
        if separation["silhouette_by_answer"].notna().any():
            right.plot(
                separation["layer"],
                separation["silhouette_by_answer"],
                marker="s",
                ms=3,
                label="by answer word",
            )
        right.axhline(0, color="0.5", lw=0.8)
        right.set_ylim(-1, 1)
        right.set_ylabel("silhouette score")
        right.legend(fontsize=7, loc="lower right")
        for axes in (left, right):
            axes.set_xlabel("layer")
        figure.suptitle(title or "How well the answer-step states separate by image, per layer")
    return figure
