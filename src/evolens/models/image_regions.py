"""Where each image token of a prompt sits on the input image: a box per token, as fractions of the image.

A family names its layout as adapter data (``ModelAdapter.image_layout``); each layout is one function of
``LAYOUTS`` reading the numbers it needs from the model's config, the processor and the batch's inputs:

- ``cells``: the demo, ``tokens_per_cell`` tokens per cell of a square grid, cells row-major, on the whole
  image (resized without cropping).
- ``grid``: a square grid of patches, row-major, on the part of the image the processor keeps (LLaVA-1.5's
  resize and centre crop; PaliGemma's and Gemma 3's plain resize; Gemma 3's 4x4 pooling is a coarser grid).
- ``merged_patches``: Qwen2/2.5/3-VL, the processor's ``image_grid_thw`` patch grid (dynamic resolution, the
  whole image) merged by ``spatial_merge_size`` per side, row-major.
- ``tiles``: Idefics3/SmolVLM, the image split into rows x cols tiles (row-major, each a pixel-shuffled
  square grid), then the global view of the whole image.
- ``anyres``: LLaVA-NeXT/OneVision, the base view (a square grid on the whole image), then the tiles of the
  best resolution, unpadded (and downsampled by OneVision when too many), a newline token after each row:
  computed by passing each token's coordinates through the model's own ``pack_image_features``.
- ``queries``: InstructBLIP's Q-Former queries: no place on the image (boxes NaN).

A token with no place (a newline, a query, a class token) has a NaN box. Mllama has no image tokens at all.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TokenRegions:
    """The regions of one image's N tokens.

    Attributes:
        boxes: (N, 4) float64, x0, y0, x1, y1 as fractions of the image's width and height; NaN rows for
            tokens with no place on the image.
        views: N view names ("image", "base", "tile", "global", "newline", "query", "cls"), None: unknown.
    """

    boxes: np.ndarray
    views: list[str | None]


@dataclass(frozen=True)
class RegionQuery:
    """What a layout reads: the model, the batch's processor outputs, which row and which of the batch's
    images (in row order) it is, the image's (width, height), and the row's number of image tokens."""

    loaded: LoadedModel
    inputs: Mapping[str, Any]
    row: int
    image_index: int
    size: tuple[int, int]
    n_tokens: int


def nowhere(n: int, view: str | None) -> TokenRegions:
    """N tokens with no place on the image."""
    return TokenRegions(np.full((n, 4), np.nan), [view] * n)


def grid_boxes(rows: int, cols: int, area: Box = (0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """(rows * cols, 4) the cells of a rows x cols grid over ``area``, row-major."""
    x0, y0, x1, y1 = area
    i, j = np.divmod(np.arange(rows * cols), cols)
    width, height = (x1 - x0) / cols, (y1 - y0) / rows
    return np.stack([x0 + j * width, y0 + i * height, x0 + (j + 1) * width, y0 + (i + 1) * height], axis=1)


def _square(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{what}: {n} image tokens do not form a square grid")
    return side


def cells_layout(query: RegionQuery) -> TokenRegions:
    """The demo: ``tokens_per_cell`` tokens per grid cell, cells row-major, the whole image."""
    config = query.loaded.model.vision.config
    boxes = np.repeat(grid_boxes(config.grid, config.grid), config.tokens_per_cell, axis=0)
    return TokenRegions(boxes, ["image"] * len(boxes))


def processor_view(image_processor: Any, size: tuple[int, int]) -> Box:
    """The part of a (width, height) image a resize-then-centre-crop processor keeps, as fractions (the
    whole image when it does not crop)."""
    crops = bool(getattr(image_processor, "do_center_crop", False))
    crop = getattr(image_processor, "crop_size", None) if crops else None
    resize = getattr(image_processor, "size", None) or {}
    if not crop or "shortest_edge" not in resize:
        return (0.0, 0.0, 1.0, 1.0)
    width, height = size
    scale = resize["shortest_edge"] / min(width, height)
    keep_x = min(1.0, crop["width"] / (width * scale))
    keep_y = min(1.0, crop["height"] / (height * scale))
    return ((1 - keep_x) / 2, (1 - keep_y) / 2, (1 + keep_x) / 2, (1 + keep_y) / 2)


def grid_layout(query: RegionQuery) -> TokenRegions:
    """A square patch grid, row-major, over what the processor keeps; a leading class token (LLaVA's
    ``vision_feature_select_strategy: full``) has no place."""
    n = query.n_tokens
    cls = n > 1 and math.isqrt(n - 1) ** 2 == n - 1 and math.isqrt(n) ** 2 != n
    side = _square(n - cls, query.loaded.adapter.family)
    image_processor = getattr(query.loaded.processor, "image_processor", None)
    boxes = grid_boxes(side, side, processor_view(image_processor, query.size))
    views: list[str | None] = ["image"] * len(boxes)
    if cls:
        return TokenRegions(np.concatenate([np.full((1, 4), np.nan), boxes]), ["cls", *views])
    return TokenRegions(boxes, views)


def merged_patches_layout(query: RegionQuery) -> TokenRegions:
    """Qwen-VL: the image's (t, h, w) patch grid merged ``spatial_merge_size`` per side, row-major per frame,
    on the whole (resized) image."""
    t, h, w = (int(v) for v in query.inputs["image_grid_thw"][query.image_index])
    merge = int(query.loaded.model.config.vision_config.spatial_merge_size)
    boxes = np.tile(grid_boxes(h // merge, w // merge), (t, 1))
    return TokenRegions(boxes, ["image"] * len(boxes))


def tiles_layout(query: RegionQuery) -> TokenRegions:
    """Idefics3/SmolVLM: rows x cols tiles (their count from the image processor on an image of this size),
    each a square grid, row-major, then the global view; without splitting, the global view alone."""
    image_processor = getattr(query.loaded.processor, "image_processor", None)
    if image_processor is None:
        raise ValueError(f"{query.loaded.adapter.family}: no image processor to split the image into tiles")
    blank = Image.new("RGB", query.size)
    info = image_processor(images=[[blank]], return_row_col_info=True, return_tensors=None)
    rows, cols = int(info["rows"][0][0]), int(info["cols"][0][0])
    per_view = query.n_tokens // (rows * cols + 1)
    side = _square(per_view, "tiles")
    parts = [grid_boxes(side, side, _cell(r, c, rows, cols)) for r in range(rows) for c in range(cols)]
    boxes = np.concatenate([*parts, grid_boxes(side, side)])
    views: list[str | None] = [*(["tile"] * (rows * cols * per_view)), *(["global"] * per_view)]
    return TokenRegions(boxes, views)


def _cell(row: int, col: int, rows: int, cols: int) -> Box:
    return (col / cols, row / rows, (col + 1) / cols, (row + 1) / rows)


def anyres_layout(query: RegionQuery) -> TokenRegions:
    """LLaVA-NeXT/OneVision: each token's centre and half size pushed through the model's own
    ``pack_image_features`` (base view, unpadded tiles, OneVision's downsampling, newline tokens), then
    from the best-resolution canvas back to the image."""
    from transformers.image_processing_utils import select_best_resolution

    model = query.loaded.model
    config = model.config
    height, width = (int(v) for v in query.inputs["image_sizes"][query.image_index])
    side = config.vision_config.image_size // config.vision_config.patch_size
    canvas_h, canvas_w = select_best_resolution((height, width), config.image_grid_pinpoints)
    tile = config.vision_config.image_size
    tiles_h, tiles_w = canvas_h // tile, canvas_w // tile
    base = _coded(grid_boxes(side, side), 0.0)
    tiles = torch.stack(
        [
            _coded(grid_boxes(side, side, _cell(t // tiles_w, t % tiles_w, tiles_h, tiles_w)), 1.0)
            for t in range(tiles_h * tiles_w)
        ]
    )
    features = torch.cat([base[None], tiles])  # (1 + tiles, side * side, 5)
    packer = getattr(model, "model", model)
    extra = {"image_newline": torch.full((5,), float("nan"), dtype=torch.float64)}
    signature = inspect.signature(packer.pack_image_features).parameters
    if "vision_feature_select_strategy" in signature:
        extra["vision_feature_select_strategy"] = config.vision_feature_select_strategy
    if "vision_aspect_ratio" in signature:
        extra["vision_aspect_ratio"] = config.vision_aspect_ratio
    packed, _ = packer.pack_image_features([features], torch.tensor([[height, width]]), **extra)
    coded = packed[0].numpy()  # (N, 5): centre x, centre y, half width, half height, is-tile
    return _decode_anyres(coded, (height, width), (canvas_h, canvas_w))


def _coded(boxes: np.ndarray, view: float) -> torch.Tensor:
    """Boxes (n, 4) as (n, 5) float64 features: centre x, centre y, half width, half height, view."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    return torch.from_numpy(np.concatenate([centre, half, np.full((len(boxes), 1), view)], axis=1))


def _decode_anyres(coded: np.ndarray, size_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> TokenRegions:
    """Packed (N, 5) codes -> boxes on the image: base codes are image fractions already; tile codes are
    canvas fractions, mapped through the processor's fit-and-centre resize (``_resize_for_patching``)."""
    height, width = size_hw
    canvas_h, canvas_w = canvas_hw
    scale_w, scale_h = canvas_w / width, canvas_h / height
    if scale_w < scale_h:
        new_w, new_h = canvas_w, min(math.ceil(height * scale_w), canvas_h)
    else:
        new_h, new_w = canvas_h, min(math.ceil(width * scale_h), canvas_w)
    pad_x, pad_y = (canvas_w - new_w) // 2, (canvas_h - new_h) // 2
    boxes = np.full((len(coded), 4), np.nan)
    views: list[str | None] = []
    for index, (cx, cy, hw, hh, view) in enumerate(coded):
        if np.isnan(view):
            views.append("newline")
            continue
        box = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
        if view > 0.5:
            box[[0, 2]] = (box[[0, 2]] * canvas_w - pad_x) / new_w
            box[[1, 3]] = (box[[1, 3]] * canvas_h - pad_y) / new_h
        boxes[index] = np.clip(box, 0.0, 1.0)
        views.append("tile" if view > 0.5 else "base")
    return TokenRegions(boxes, views)


def queries_layout(query: RegionQuery) -> TokenRegions:
    """InstructBLIP: Q-Former queries have no place on the image."""
    return nowhere(query.n_tokens, "query")


LAYOUTS: dict[str, Callable[[RegionQuery], TokenRegions]] = {
    "cells": cells_layout,
    "grid": grid_layout,
    "merged_patches": merged_patches_layout,
    "tiles": tiles_layout,
    "anyres": anyres_layout,
    "queries": queries_layout,
}
"""Layouts by the name a family's adapter gives (``ModelAdapter.image_layout``)."""


def token_regions(
    loaded: LoadedModel,
    inputs: Mapping[str, Any],
    row: int,
    image_index: int,
    size: tuple[int, int] | None,
    n_tokens: int,
) -> TokenRegions:
    """The regions of row ``row``'s ``n_tokens`` image tokens (the batch's ``image_index``-th image, of
    (width, height) ``size``); NaN boxes for a family without a layout or a row without an image. A layout
    that gives another number of tokens than the row holds is a ``ValueError`` (a wrong layout)."""
    layout = loaded.adapter.image_layout
    if size is None or n_tokens == 0 or layout is None:
        return nowhere(n_tokens, None)
    regions = LAYOUTS[layout](RegionQuery(loaded, inputs, row, image_index, size, n_tokens))
    if len(regions.boxes) != n_tokens:
        raise ValueError(
            f"image layout '{layout}' of {loaded.adapter.family} gives {len(regions.boxes)} regions for "
            f"{n_tokens} image tokens"
        )
    return regions
