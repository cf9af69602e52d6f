"""Each family's map from image tokens to regions of the image (``evolens.models.image_regions``), checked by
planting a distinctive pattern at a known place of the image and finding the image tokens that change.

The tiny models' vision towers are made local first: every attention output projection of the tower is
zeroed (a copy of the model), so a patch's features depend on its own pixels only, through the patch
embedding, per-token MLPs and norms, pooling or pixel shuffle, merger and projector. The input embeddings
at the image tokens (lens layer 0) then change exactly where the planted pixels land, and the map must put
every changed token on the planted region, and the tokens at its centre among the changed ones.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from PIL import Image

from evolens.models import LoadedModel
from evolens.models.capture import LayerCapture
from evolens.models.image_regions import TokenRegions, token_regions
from evolens.models.image_tokens import image_positions
from tests.models.builders import TinyFamily, tiny_families
from tests.models.builders.saved import TinyModels

GRID_FAMILIES = [row for row in tiny_families(vision=True) if row.family not in ("mllama", "instructblip")]
PLANT = (0.55, 0.25, 0.8, 0.5)
"""The planted region (x0, y0, x1, y1) as fractions of the image: right of centre, upper half."""
SIZES = ((96, 80), (72, 120))
"""A landscape and a portrait image: dynamic-resolution and tiling families place them differently."""
ATTENTION_OUTPUT = re.compile(r"(vision|visual).*attn\.(out_proj|proj|o_proj)$")


def local_copy(loaded: LoadedModel) -> LoadedModel:
    """A copy of ``loaded`` whose vision tower mixes no patches: its attention outputs zeroed."""
    model = copy.deepcopy(loaded.model)
    zeroed = 0
    for name, module in model.named_modules():
        if ATTENTION_OUTPUT.search(name) and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
            zeroed += 1
    assert zeroed, "no attention output projection found in the vision tower"
    return LoadedModel(loaded.name, model, loaded.tokenizer, loaded.processor, loaded.adapter)


def images(size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """A smooth image, and the same with high-contrast noise planted in ``PLANT``."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 200 // width + 20, y * 200 // height + 20, np.full_like(x, 120)]
    base = np.stack(channels, -1).astype(np.uint8)
    planted = base.copy()
    x0, y0, x1, y1 = PLANT
    rows, cols = slice(round(y0 * height), round(y1 * height)), slice(round(x0 * width), round(x1 * width))
    noise = np.random.default_rng(0).integers(0, 2, planted[rows, cols].shape[:2])[..., None] * 255
    planted[rows, cols] = noise.astype(np.uint8)
    return Image.fromarray(base), Image.fromarray(planted)


def embeddings_and_regions(loaded: LoadedModel, image: Image.Image) -> tuple[torch.Tensor, TokenRegions]:
    """The input embeddings (N, d) at the image tokens of a one-image prompt, and the map's regions."""
    inputs = loaded.build_inputs(["Describe this image."], [image])
    mask = image_positions(loaded, inputs["input_ids"])
    with torch.no_grad(), LayerCapture(loaded, lens_layers=[0], keep=mask) as capture:
        loaded.model(**inputs)
    assert capture.kept is not None
    regions = token_regions(loaded, inputs, 0, 0, image.size, int(mask.sum()))
    return capture.kept[:, 0].float(), regions


def overlaps(box: np.ndarray, area: tuple[float, float, float, float], margin: float) -> bool:
    return bool(
        box[0] < area[2] + margin and box[2] > area[0] - margin and box[1] < area[3] + margin
        and box[3] > area[1] - margin
    )  # fmt: skip


def contains(box: np.ndarray, x: float, y: float) -> bool:
    return bool(box[0] <= x <= box[2] and box[1] <= y <= box[3])


@pytest.mark.parametrize("family", GRID_FAMILIES, ids=[row.id for row in GRID_FAMILIES])
@pytest.mark.parametrize("size", SIZES, ids=["landscape", "portrait"])
def test_a_planted_pattern_is_found_where_the_map_puts_it(
    family: TinyFamily, size: tuple[int, int], tiny_models: TinyModels
) -> None:
    loaded = local_copy(tiny_models.get(family, ("cpu", torch.float32)))
    base, planted = images(size)
    before, regions = embeddings_and_regions(loaded, base)
    after, planted_regions = embeddings_and_regions(loaded, planted)
    np.testing.assert_array_equal(regions.boxes, planted_regions.boxes)
    change = (after - before).norm(dim=-1).numpy()
    changed = change > 1e-3 * change.max()
    boxes = regions.boxes
    placed = ~np.isnan(boxes).any(axis=1)
    assert changed.any() and placed.any()
    assert not changed[~placed].any(), "a token with no place on the image changed"
    for index in np.flatnonzero(changed):  # every changed token lies on the planted region (a pixel's slack)
        margin = 0.5 * max(boxes[index, 2] - boxes[index, 0], boxes[index, 3] - boxes[index, 1])
        assert overlaps(boxes[index], PLANT, margin), (index, boxes[index], regions.views[index])
    centre = ((PLANT[0] + PLANT[2]) / 2, (PLANT[1] + PLANT[3]) / 2)
    for view in {v for v, p in zip(regions.views, placed, strict=True) if p}:
        at_centre = [
            i for i in np.flatnonzero(placed) if regions.views[i] == view and contains(boxes[i], *centre)
        ]
        assert at_centre and changed[at_centre].all(), (view, at_centre)


def test_queries_and_cross_attention_have_no_grid(tiny_models: TinyModels) -> None:
    """InstructBLIP's Q-Former queries have no place on the image; Mllama has no image tokens at all."""
    (row,) = tiny_families("instructblip")
    loaded = tiny_models.get(row, ("cpu", torch.float32))
    base, _ = images(SIZES[0])
    _, regions = embeddings_and_regions(loaded, base)
    assert np.isnan(regions.boxes).all() and set(regions.views) == {"query"}
    (mllama,) = tiny_families("mllama")
    assert tiny_models.get(mllama, ("cpu", torch.float32)).adapter.image_layout is None


def test_the_demo_finds_an_object_in_its_cell(demo_vlm: LoadedModel) -> None:
    """The demo: three tokens per cell of its 3x3 grid; a shape drawn in a cell changes that cell's tokens
    most (the encoder's receptive fields reach neighbouring cells a little)."""
    from evolens.data.shapes import Background, Scene, ShapeObject, render_scene

    background = Background("white", "plain")
    empty = render_scene(Scene(0, background))
    for row, col in ((0, 2), (1, 1), (2, 0)):
        centre = ((col + 0.5) / 3, (row + 0.5) / 3)
        shape = ShapeObject("circle", "red", "large", "", centre, 0.145, (215, 35, 35))
        drawn = render_scene(Scene(0, background, (shape,)))
        before, regions = embeddings_and_regions(demo_vlm, empty)
        after, _ = embeddings_and_regions(demo_vlm, drawn)
        change = (after - before).norm(dim=-1).numpy()
        top = np.argsort(change)[::-1][:3]
        assert all(contains(regions.boxes[i], *centre) for i in top), (row, col, top)
