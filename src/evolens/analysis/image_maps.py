"""The image maps of one sample (``--image-tokens``): each probe word's lens probability at every image
token, laid back over the image, at every layer.

``image_maps`` gathers one sample's rows of the ``image_tokens/`` table; ``raster`` paints one word at one
layer onto a grid of pixels over the image (each token's box filled with its probability); ``maps_summary``
is what summary.json's ``image_maps`` holds for the report's layer slider. Where a family shows the image
in several views (LLaVA-NeXT's base view and tiles, Idefics3's tiles and global view) the maps use the view
with the most tokens, and say which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolens.io.trace import Trace

MAX_PANELS = 12
"""Layers drawn per word in the small multiples (evenly spaced, the first and last always; the figure's
title names them); the report's slider shows every layer."""


@dataclass(frozen=True)
class ImageMaps:
    """One sample's image-token lens, on the image.

    Attributes:
        sample_id, image: the sample and its image path (None: none recorded).
        view: the view drawn (see module doc).
        words: the P probe words.
        boxes: (N, 4) x0, y0, x1, y1 of the N tokens of ``view`` (fractions of the image).
        probs: (L+1, N, P) the probe words' probabilities at those tokens.
        top1: (L+1, N) the lens's top-1 token ids there.
    """

    sample_id: str
    image: str | None
    view: str | None
    words: list[str]
    boxes: np.ndarray
    probs: np.ndarray
    top1: np.ndarray

    @property
    def n_layers(self) -> int:
        """L (lens layers 0..L)."""
        return self.probs.shape[0] - 1

    def shown_layers(self, panels: int = MAX_PANELS) -> list[int]:
        """The layers of the small multiples: all when they fit in ``panels``, else evenly spaced."""
        if self.n_layers + 1 <= panels:
            return list(range(self.n_layers + 1))
        return sorted({round(float(v)) for v in np.linspace(0, self.n_layers, panels)})


def image_maps(trace: Trace, sample_id: str) -> ImageMaps | None:
    """The maps of ``sample_id``, or None when it has no image token with a place on the image."""
    table = trace.image_tokens
    rows = table[table["sample_id"] == sample_id].dropna(subset=["x0", "y0", "x1", "y1"])
    if rows.empty:
        return None
    views = Counter(rows["view"].fillna(""))
    view = max(views, key=lambda name: views[name])
    rows = rows[rows["view"].fillna("") == view]
    words = [str(w) for w in rows["probe_words"].iloc[0]]
    probs = np.stack([np.stack(p) for p in rows["probe_prob"]]).reshape(len(rows), -1, len(words))
    images = trace.samples.set_index("sample_id")["image"]
    return ImageMaps(
        sample_id=sample_id,
        image=None if images.get(sample_id) is None else str(images[sample_id]),
        view=view or None,
        words=words,
        boxes=rows[["x0", "y0", "x1", "y1"]].to_numpy(np.float64),
        probs=probs.transpose(1, 0, 2),
        top1=np.stack(rows["top1_id"]).T,
    )


def raster(maps: ImageMaps, word: int, layer: int, resolution: int = 48) -> np.ndarray:
    """(resolution, resolution) the probability of word ``word`` at ``layer`` over the image: each pixel
    the value of the last token whose box holds its centre (NaN where none does)."""
    grid = np.full((resolution, resolution), np.nan)
    centres = (np.arange(resolution) + 0.5) / resolution
    for (x0, y0, x1, y1), value in zip(maps.boxes, maps.probs[layer, :, word], strict=True):
        columns = (centres >= x0) & (centres < x1)
        rows = (centres >= y0) & (centres < y1)
        grid[np.ix_(rows, columns)] = value
    return grid


def maps_summary(maps: ImageMaps, strings: Callable[[int], str] | None = None) -> dict[str, Any]:
    """summary.json's entry of one sample for the report: boxes, and per word and layer the probabilities
    (4 significant digits), and the top-1 token strings per layer and token when ``strings`` names them."""
    entry: dict[str, Any] = {
        "sample_id": maps.sample_id,
        "view": maps.view,
        "words": maps.words,
        "boxes": np.round(maps.boxes, 4).tolist(),
        "probs": [
            [[float(f"{v:.4g}") for v in maps.probs[layer, :, word]] for layer in range(maps.n_layers + 1)]
            for word in range(len(maps.words))
        ],
    }
    if strings is not None:
        entry["top1"] = [[strings(int(t)) for t in layer] for layer in maps.top1]
    return entry
