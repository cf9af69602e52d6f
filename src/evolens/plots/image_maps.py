"""Image maps: for each probe word (rows), its lens probability over the image at a few layers (columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from evolens.analysis.image_maps import ImageMaps, raster
from evolens.analysis.stages import StageResult
from evolens.plots.style import figure_style, new_figure


def background(path: str | None) -> np.ndarray | None:
    """The sample's image as an (H, W, 3) array, or None when it is not there any more."""
    if path is None or not Path(path).is_file():
        return None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:
        return None


def plot_image_maps(maps: ImageMaps, stages: StageResult | None = None) -> Figure:
    """Small multiples: one row per probe word, one column per shown layer; the image in grey under each
    word's probability (one colour scale per word, 0 to its maximum over layers and tokens)."""
    layers = maps.shown_layers()
    words = maps.words or ["(no probe word)"]
    picture = background(maps.image)
    with figure_style():
        figure = new_figure(1.35 * len(layers) + 1.2, 1.45 * len(words) + 1.0)
        grid = figure.subplots(len(words), len(layers), squeeze=False)
        for row, word in enumerate(words):
            top = float(maps.probs[..., row].max()) if maps.words else 1.0
            for column, layer in enumerate(layers):
                axes = grid[row][column]
                axes.set_xticks([])
                axes.set_yticks([])
                axes.grid(False)
                if picture is not None:
                    axes.imshow(picture.mean(axis=2), cmap="gray", extent=(0, 1, 1, 0), alpha=0.5)
                if maps.words:
                    axes.imshow(
                        raster(maps, row, layer), cmap="magma", vmin=0, vmax=max(top, 1e-12),
                        extent=(0, 1, 1, 0), alpha=0.75,
                    )  # fmt: skip
                critical = stages is not None and stages.critical_layer == layer
                axes.set_title(f"L{layer}" + (" (critical)" if critical else ""), fontsize=7)
                if column == 0:
                    axes.set_ylabel(f"{word}\n(max {top:.2g})", fontsize=8)
        shown = "" if len(layers) == maps.n_layers + 1 else f"; layers {', '.join(map(str, layers))} shown"
        figure.suptitle(
            f"{maps.sample_id}: p(word) at each image token ({maps.view or 'image'} view){shown}", fontsize=9
        )
    return figure
