"""Draw the figures an analysis planned (``evolens.analysis.views.FigureSpec``), as PNG + SVG."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from evolens.analysis.image_effect import ImageEffectCurves
from evolens.analysis.image_maps import ImageMaps
from evolens.analysis.probes import ProbeCurves
from evolens.analysis.single_token import CandidateCurves, HeatmapData, LensGrid
from evolens.analysis.stages import StageResult
from evolens.analysis.views import FeatureMap, FigureSpec, FigureView, LayerCurves, Separation
from evolens.plots.features import plot_feature_map, plot_separation
from evolens.plots.findings import plot_image_effect, plot_probes
from evolens.plots.heatmap import plot_heatmap
from evolens.plots.image_maps import plot_image_maps
from evolens.plots.layer_curves import plot_layer_statistics
from evolens.plots.lens_grid import plot_lens_grid
from evolens.plots.style import save_figure
from evolens.plots.token_probs import plot_token_probabilities


def _feature_map(view: FeatureMap, stages: StageResult) -> Figure:
    return plot_feature_map(
        view.projection.xy,
        view.rows,
        stages,
        view.method,
        by_sample=view.by_sample,
        title=view.title,
        explained=view.projection.explained,
    )


DRAWERS: dict[type, Callable[[Any, StageResult], Figure]] = {
    LayerCurves: lambda view, stages: plot_layer_statistics(view.statistics, stages, list(view.statistics)),
    HeatmapData: plot_heatmap,
    LensGrid: plot_lens_grid,
    CandidateCurves: plot_token_probabilities,
    FeatureMap: _feature_map,
    Separation: lambda view, stages: plot_separation(view.table, stages, title=view.title),
    ImageEffectCurves: lambda view, stages: plot_image_effect(view.effect, stages),
    ProbeCurves: lambda view, stages: plot_probes(view.probes, stages),
    ImageMaps: plot_image_maps,
}
"""The drawing of each kind of view: (view, the dataset's stages) -> figure."""


def draw(view: FigureView, stages: StageResult) -> Figure:
    """The figure of one view, with the dataset's stages and key layers marked."""
    return DRAWERS[type(view)](view, stages)


def draw_figures(figures: Sequence[FigureSpec], stages: StageResult, out: Path) -> list[Path]:
    """Draw every figure into ``out`` (``name``.png and ``name``.svg each); the files written, in order."""
    written: list[Path] = []
    for spec in figures:
        written += save_figure(draw(spec.view, stages), out, spec.name)
    return written
