"""Localisation on the shapes world and the image maps, on planted image-token tables with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from evolens.analysis.image_maps import image_maps, maps_summary, raster
from evolens.analysis.localisation import image_side, localisation
from evolens.io.trace import Trace
from evolens.plots.image_maps import plot_image_maps

N_LAYERS = 4
CELLS = [(r, c) for r in range(3) for c in range(3)]
POSITION_NAMES = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right", (1, 0): "left", (1, 1): "center",
    (1, 2): "right", (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}  # fmt: skip


def planted(found_from: list[int | None], words: tuple[str, ...] = ("red", "blue")) -> Trace:
    """One single-object scene per entry, a red object in cell i % 9: the demo's layout (3 tokens per
    cell); "red" peaks on the object's cell from lens layer ``found_from[i]`` on (never for None), on the
    opposite cell before. Plus a two-object scene, which never counts."""
    samples, rows = [], []
    for index, first in enumerate([*found_from, 0]):
        cell = CELLS[index % 9]
        objects = [{"color": "red", "position": POSITION_NAMES[cell]}]
        if index == len(found_from):
            objects.append({"color": "blue", "position": "top"})
        truth = json.dumps({"source": "shapes", "objects": objects})
        sample_id = f"s{index}"
        samples.append({"sample_id": sample_id, "image": f"/nowhere/{sample_id}.png", "ground_truth": truth})
        wrong = CELLS[8 - index % 9] if CELLS[8 - index % 9] != cell else (0, 0)
        for token in range(27):
            r, c = CELLS[token // 3]
            probs = np.full((N_LAYERS + 1, len(words)), 0.01)
            for layer in range(N_LAYERS + 1):
                found = first is not None and layer >= first
                if (r, c) == (cell if found else wrong):
                    probs[layer, 0] = 0.5
            rows.append(
                {
                    "sample_id": sample_id, "token_index": token, "position": 5 + token, "view": "image",
                    "x0": c / 3, "y0": r / 3, "x1": (c + 1) / 3, "y1": (r + 1) / 3,
                    "top1_id": np.arange(N_LAYERS + 1), "probe_words": np.array(words),
                    "probe_ids": np.arange(len(words)), "probe_prob": list(probs),
                }
            )  # fmt: skip
    trace = Trace(Path("/nowhere"), {"n_layers": N_LAYERS}, pd.DataFrame(samples), pd.DataFrame())
    trace.__dict__["image_tokens"] = pd.DataFrame(rows)
    return trace


def test_the_score_is_the_share_of_scenes_found_at_each_layer() -> None:
    found_from = [0, 1, 2, 2, 3, None, 1, 2, 4, None]
    result = localisation(planted(found_from), n_boot=200)
    assert result is not None
    expected = [np.mean([f is not None and layer >= f for f in found_from]) for layer in range(N_LAYERS + 1)]
    np.testing.assert_allclose(result["score"], expected)
    assert result["scenes"] == 10 and result["scored"] == 10 and result["unscored"] == 0
    assert result["best_layer"] == N_LAYERS
    for score, low, high in zip(result["score"], result["low"], result["high"], strict=True):
        assert low <= score <= high
    assert result["low"][-1] < result["high"][-1]  # scenes differ at the last layer: a real interval


def test_scenes_whose_probe_words_lack_the_colour_are_counted_apart() -> None:
    result = localisation(planted([0, 0, 0], words=("blue", "circle")), n_boot=50)
    assert result is not None
    assert result["scenes"] == 3 and result["scored"] == 0 and result["unscored"] == 3
    assert result["score"] == [] and result["best_layer"] is None


def test_a_trace_without_image_tokens_has_no_image_entries() -> None:
    trace = planted([0])
    trace.__dict__["image_tokens"] = pd.DataFrame()
    assert localisation(trace) is None
    assert image_side(trace, ["s0"], str, 10, 0, True) == ({}, [])


def test_image_maps_raster_and_figure() -> None:
    trace = planted([2])
    maps = image_maps(trace, "s0")
    assert maps is not None and maps.words == ["red", "blue"] and maps.probs.shape == (N_LAYERS + 1, 27, 2)
    grid = raster(maps, 0, N_LAYERS, resolution=9)
    assert grid[0:3, 0:3].max() == 0.5 and np.nanmax(np.delete(grid.reshape(-1), range(0))) == 0.5
    assert (grid == 0.5).sum() == 9  # exactly the object's cell (top left), 3x3 pixels
    assert np.isclose(raster(maps, 0, 0, resolution=9)[6:9, 6:9], 0.5).all()  # the decoy cell before layer 2
    entry = maps_summary(maps, str)
    assert len(entry["probs"]) == 2 and len(entry["probs"][0]) == N_LAYERS + 1 and len(entry["boxes"]) == 27
    assert entry["top1"][1][0] == "1"
    entries, figures = image_side(trace, ["s0"], str, 20, 0, True)
    assert set(entries) == {"localisation", "image_maps"} and [f.name for f in figures] == ["image_maps_s0"]
    figure = plot_image_maps(maps)
    assert len(figure.axes) == 2 * (N_LAYERS + 1)
