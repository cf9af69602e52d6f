"""Localisation on the shapes world: does the colour word peak on the object's cell, layer by layer?

For every single-object scene of a trace with an image-token lens (``--image-tokens``) whose probe words
include the object's colour (``--probe-words red,green,...`` makes every scene count; by default only
scenes whose generated text names a colour word do), the peak of that word's probability over the image
tokens with a place on the image, at lens layer l, is a hit when the peak token's centre lies in the
object's cell of the world's 3x3 grid. The score of layer l is the share of hits over scenes (a scene asked
several prompts counts once: the mean of its samples' hits), with a percentile bootstrap interval over
scenes. summary.json's ``localisation`` (docs/analysis.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from evolens.analysis.bootstrap import percentile_interval, replicate_counts
from evolens.analysis.image_maps import image_maps, maps_summary
from evolens.analysis.views import FigureSpec
from evolens.data.shapes import POSITIONS
from evolens.io.store import file_stem
from evolens.io.trace import Trace

GRID = 3
"""Cells per side of the shapes world's grid."""


def scene_object(ground_truth: str | None) -> dict[str, Any] | None:
    """The one object of a single-object shapes scene (its ``color``, ``position``), else None."""
    if not ground_truth:
        return None
    truth = json.loads(ground_truth)
    objects = truth.get("objects") if isinstance(truth, dict) else None
    if truth.get("source") != "shapes" or not isinstance(objects, list) or len(objects) != 1:
        return None
    return dict(objects[0])


def peak_hits(rows: pd.DataFrame, word: str, cell: tuple[int, int]) -> np.ndarray | None:
    """(L+1,) bool: at each lens layer, whether ``word``'s probability peaks on a token whose centre lies in
    ``cell`` (row, column); None when ``word`` is not a probe word or no token has a place."""
    words = list(rows["probe_words"].iloc[0])
    if word not in words:
        return None
    placed = rows.dropna(subset=["x0", "y0", "x1", "y1"])
    if placed.empty:
        return None
    probs = np.stack([np.stack(p) for p in placed["probe_prob"]])[:, :, words.index(word)]  # (N, L+1)
    peak = probs.argmax(axis=0)  # (L+1,)
    centre_x = ((placed["x0"] + placed["x1"]) / 2).to_numpy()[peak]
    centre_y = ((placed["y0"] + placed["y1"]) / 2).to_numpy()[peak]
    row, col = cell
    return (np.floor(centre_y * GRID) == row) & (np.floor(centre_x * GRID) == col)


def localisation(trace: Trace, n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """summary.json's ``localisation``, or None when the trace has no image-token table or no single-object
    shapes scene. Per lens layer: ``score`` (share of scenes), ``low``/``high`` (95% percentile bootstrap
    over scenes); ``best_layer``; how many scenes there were, were scored, and why the others were not."""
    table = trace.image_tokens
    if table.empty:
        return None
    by_sample = dict(iter(table.groupby("sample_id", sort=False)))
    scenes: dict[str, list[np.ndarray]] = {}
    single: set[str] = set()
    for sample in trace.samples.itertuples():
        target = scene_object(sample.ground_truth)
        if target is None or sample.sample_id not in by_sample:
            continue
        scene = str(sample.image)
        single.add(scene)
        hits = peak_hits(by_sample[sample.sample_id], str(target["color"]), POSITIONS[target["position"]])
        if hits is not None:
            scenes.setdefault(scene, []).append(hits.astype(np.float64))
    if not single:
        return None
    result: dict[str, Any] = {
        "scenes": len(single),
        "scored": len(scenes),
        "unscored": len(single - set(scenes)),
        "unit": "single-object shapes scenes (a scene's samples averaged)",
        "hit": "the colour word's probability peaks on a token centred in the object's 3x3 cell",
    }
    if not scenes:
        result.update(score=[], low=[], high=[], best_layer=None)
        return result
    values = np.stack([np.mean(hits, axis=0) for hits in scenes.values()])  # (n_scenes, L+1)
    replicates = replicate_counts(len(values), n_boot, seed) @ values / len(values)  # (n_boot, L+1)
    intervals = [percentile_interval(replicates[:, layer]) for layer in range(values.shape[1])]
    score = values.mean(axis=0)
    result.update(
        score=[float(v) for v in score],
        low=[low for low, _ in intervals],
        high=[high for _, high in intervals],
        best_layer=int(np.argmax(score)),
    )
    return result


def image_side(
    trace: Trace, samples: list[str], strings: Callable[[int], str], n_boot: int, seed: int, figures: bool
) -> tuple[dict[str, Any], list[FigureSpec]]:
    """summary.json's entries of the image-token lens (none without it): ``localisation`` (where scenes carry
    object positions) and ``image_maps`` (each of ``samples``' maps, for the report's layer slider), and
    the small-multiples figure of each of ``samples`` (``image_maps_<sample>``) when ``figures``."""
    if trace.image_tokens.empty:
        return {}, []
    entries: dict[str, Any] = {}
    found = localisation(trace, n_boot=n_boot, seed=seed)
    if found is not None:
        entries["localisation"] = found
    specs, maps = [], []
    for sample_id in samples:
        sample_maps = image_maps(trace, sample_id)
        if sample_maps is None:
            continue
        maps.append(maps_summary(sample_maps, strings))
        if figures:
            specs.append(FigureSpec(f"image_maps_{file_stem(sample_id)}", sample_maps))
    entries["image_maps"] = maps
    return entries, specs
