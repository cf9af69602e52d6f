"""What each figure of ``analyze`` shows, computed: the analysis plans the figures, ``evolens.plots`` draws
them (``evolens.plots.draw``).

A figure is a ``FigureSpec``: its file stem (``name``.png and ``name``.svg) and one view, the numbers it
draws. The single-token views (``HeatmapData``, ``LensGrid``, ``CandidateCurves``) live in
``evolens.analysis.single_token``, those of the image effect and the probes in ``image_effect`` and
``probes``; the others are here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from evolens.analysis.features import Projection
from evolens.analysis.image_effect import ImageEffectCurves
from evolens.analysis.image_maps import ImageMaps
from evolens.analysis.probes import ProbeCurves
from evolens.analysis.single_token import CandidateCurves, HeatmapData, LensGrid


@dataclass(frozen=True)
class LayerCurves:
    """Per-layer means with intervals, by token kind: summary.json's ``distribution`` (metric ->
    {"layers", "label", group -> {"mean", "low", "high", "n_tokens"}})."""

    statistics: dict[str, Any]


@dataclass(frozen=True)
class FeatureMap:
    """A 2-D map of hidden states.

    Attributes:
        projection: the (n_points, 2) coordinates (and PCA's variance shares).
        rows: one row per point: layer, sample_id, step, token, and for a many-images map answer and
            group.
        method: "tsne" or "pca".
        title: the figure's title.
        by_sample: join each sample's points in layer order (the many-images map).
    """

    projection: Projection
    rows: pd.DataFrame
    method: str
    title: str
    by_sample: bool = False


@dataclass(frozen=True)
class Separation:
    """How well the images' states separate, per layer (``features.separation_by_layer``'s table)."""

    table: pd.DataFrame
    title: str


FigureView = (
    LayerCurves
    | HeatmapData
    | LensGrid
    | CandidateCurves
    | FeatureMap
    | Separation
    | ImageEffectCurves
    | ProbeCurves
    | ImageMaps
)


@dataclass(frozen=True)
class FigureSpec:
    """One figure to draw: written as ``name``.png and ``name``.svg, showing ``view``."""

    name: str
    view: FigureView

    @property
    def files(self) -> list[str]:
        """The files it becomes, relative to the output folder (summary.json's ``figures``)."""
        return [f"{self.name}.png", f"{self.name}.svg"]
