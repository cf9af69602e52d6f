"""Information probes: what a layer *knows* (a held-out linear probe on its hidden states), beside what it
*says* (the lens curves).

For each prompt asked of at least ``MIN_IMAGES`` images, each attribute the shapes world's ground truth
defines (``ATTRIBUTES``: the first object's colour, shape and grid cell in reading order, and the number of
objects, well defined in scenes of several objects too) and each stored lens layer: a logistic regression
on the standardized states (scikit-learn), cross-validated with held-out images (``GroupKFold`` by image,
so no image is trained and tested on), its held-out accuracy with a Wilson 95% interval taking the images
as the independent units (n = images; exact when each image has one sample of the prompt, conservative
otherwise), and the chance level (the majority class's share; ``chance_held_out``: what the majority rule
scores under the same folds, which a probe without information matches, and which can lie below it).

The state probed is each sample's first stored step: step 0 is the prompt's last position, the state from
which the answer starts, before any answer token is emitted. The attribute the prompt asks about
(``asked_attribute``: the colour question asks colour) is "asked"; ``CONTROL`` names one it does not ask
about, the honest control: an attribute that is decodable although nobody asked for it shows "when it is
there", apart from "when it is said" (the lens). At lens layer 0 every sample of a prompt holds the same
state (the embedding of the prompt's last token), so a probe there is at chance by construction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from evolens.analysis.image_clusters import image_ids
from evolens.io.store import hidden_path
from evolens.io.trace import Trace

MIN_IMAGES = 4
MAX_FOLDS = 5
Z_95 = 1.959963984540054
CLASSIFIER = "logistic regression (L2, C = 1) on standardized states, scikit-learn"
STATE = "each sample's first stored step; step 0 is the prompt's last position, from which the answer starts"


def shapes_objects(truth: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The scene's objects when ``truth`` describes one as the shapes world does (each object a mapping
    with its colour, shape and position), else None (e.g. COCO's object names)."""
    objects = truth.get("objects")
    keys = {"color", "shape", "position"}
    if (
        isinstance(objects, list)
        and objects
        and all(isinstance(o, dict) and keys <= o.keys() for o in objects)
    ):
        return objects
    return None


def _first_object(key: str) -> Callable[[dict[str, Any]], str | None]:
    def value(truth: dict[str, Any]) -> str | None:
        objects = shapes_objects(truth)
        return None if objects is None else str(objects[0][key])

    return value


def _count(truth: dict[str, Any]) -> str | None:
    objects = shapes_objects(truth)
    return None if objects is None else str(len(objects))


ATTRIBUTES: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "color": _first_object("color"),
    "count": _count,
    "position": _first_object("position"),
    "shape": _first_object("shape"),
}
"""Attribute -> its value in a shapes-world ground truth (None where it has none); in name order, the order
summary.json keeps (its keys are sorted), so figures and report give each attribute the same colour."""
ASKED = (
    ("color", re.compile(r"\bcolou?rs?\b", re.I)),
    ("count", re.compile(r"\bhow many\b|\bcount\b|\bnumber of\b", re.I)),
    ("position", re.compile(r"\bwhere\b|\bposition\b", re.I)),
    ("shape", re.compile(r"\bshapes?\b", re.I)),
)
"""The attribute a prompt asks about: the first whose pattern the prompt matches ("What is the color of the
shape?" asks colour)."""
CONTROL = {"color": "shape", "shape": "color", "count": "color", "position": "color"}
"""For each asked attribute, the one not asked that serves as its control."""


@dataclass(frozen=True)
class ProbeCurves:
    """The figure of summary.json's ``probes`` (one panel per prompt: accuracy per layer per attribute,
    its band and its chance line)."""

    probes: dict[str, Any]


def asked_attribute(prompt: str) -> str | None:
    """The attribute ``prompt`` asks about (``ASKED``), None for a description or a yes/no question."""
    return next((name for name, pattern in ASKED if pattern.search(prompt)), None)


def wilson(accuracy: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``accuracy`` observed over ``n`` units."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def held_out_accuracy(
    states: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_folds: int
) -> tuple[float, float]:
    """(the probe's accuracy, the majority rule's accuracy) over the predictions for each sample from the
    fold that held its image out. The majority rule (say the training folds' most frequent class) is what
    a probe without information scores under the same folds: at or below the majority share, since a
    held-out fold's classes are scarcer in its training folds.

    Args:
        states: (n_samples, d); labels, groups: (n_samples,) classes and images.
    """
    correct = majority = 0
    for train, test in GroupKFold(n_splits=n_folds).split(states, labels, groups):
        classes, counts = np.unique(labels[train], return_counts=True)
        majority += int((labels[test] == classes[np.argmax(counts)]).sum())
        if len(classes) < 2:  # one class to learn: the probe can only say it
            correct += int((labels[test] == classes[0]).sum())
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(states[train], labels[train])
        correct += int((probe.predict(states[test]) == labels[test]).sum())
    return correct / len(labels), majority / len(labels)


def ground_truths(trace: Trace) -> list[dict[str, Any] | None]:
    """Each sample's ground truth (the samples table's JSON), None where it has none or it is not JSON."""
    column = trace.samples["ground_truth"] if "ground_truth" in trace.samples else [None] * len(trace.samples)
    truths: list[dict[str, Any] | None] = []
    for text in column:
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            value = None
        truths.append(value if isinstance(value, dict) else None)
    return truths


def first_states(trace: Trace, sample_ids: list[str]) -> tuple[int, np.ndarray, list[str], np.ndarray] | None:
    """(step, layers (K,), the sample ids that have it, states (n, K, d)): the first stored step of the
    first sample with hidden states, at the lens layers every such sample stored; None without states.
    Only that step is kept of each sample's file (a file may hold every step of a long generation)."""
    step: int | None = None
    kept: dict[str, dict[int, np.ndarray]] = {}
    for sample_id in sample_ids:
        hidden = trace.hidden(sample_id)
        if hidden is None or not len(hidden.steps):
            continue
        step = int(hidden.steps[0]) if step is None else step
        rows = np.flatnonzero(hidden.steps == step)
        if len(rows):
            kept[sample_id] = dict(zip(hidden.layers.tolist(), hidden.states[rows[0]].copy(), strict=True))
    if step is None or not kept:
        return None
    layers = sorted(set.intersection(*(set(by_layer) for by_layer in kept.values())))
    states = np.stack([np.stack([by_layer[layer] for layer in layers]) for by_layer in kept.values()])
    return step, np.asarray(layers), list(kept), states.astype(np.float64)


def attribute_probe(
    states: np.ndarray, labels: list[str | None], images: np.ndarray, layers: np.ndarray, step: int
) -> dict[str, Any]:
    """One attribute's probe over layers: {layers, accuracy, low, high, chance, ...}, or {"not computed"}.

    Args:
        states: (n, K, d) per sample and layer; labels: (n,) the attribute's values; images: (n,).
    """
    keep = np.array([label is not None for label in labels])
    y = np.array([label for label in labels if label is not None], dtype=object)
    groups = images[keep]
    n_images = len(np.unique(groups))
    if n_images < MIN_IMAGES:
        return {"not computed": f"{n_images} images with this attribute; a probe needs {MIN_IMAGES}"}
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        return {"not computed": f"every image has the same value ({classes[0]}): nothing to tell apart"}
    n_folds = min(MAX_FOLDS, n_images)
    accuracy, held_out_chance = [], 0.0
    with threadpool_limits(1):
        for column in range(len(layers)):
            score, held_out_chance = held_out_accuracy(states[keep, column], y, groups, n_folds)
            accuracy.append(score)
    bounds = [wilson(a, n_images) for a in accuracy]
    return {
        "layers": layers.tolist(),
        "accuracy": [round(a, 4) for a in accuracy],
        "low": [round(low, 4) for low, _ in bounds],
        "high": [round(high, 4) for _, high in bounds],
        "chance": round(float(counts.max() / counts.sum()), 4),
        "chance_held_out": round(held_out_chance, 4),
        "classes": [str(c) for c in classes],
        "n_samples": int(keep.sum()),
        "n_images": n_images,
        "n_folds": n_folds,
        "step": step,
    }


def prompt_probes(trace: Trace, prompt: str, rows: list[int], truths: list[dict[str, Any] | None]) -> dict:
    """The probes of one prompt's samples (``rows`` of ``trace.samples``)."""
    asked = asked_attribute(prompt)
    control = CONTROL[asked] if asked is not None else None
    entry: dict[str, Any] = {"prompt": prompt, "asked": asked, "control": control}
    row_of = {str(trace.samples["sample_id"].iat[row]): row for row in rows}
    found = first_states(trace, list(row_of))
    if found is None:
        return {**entry, "not computed": "no stored hidden states (trace with --keep-hidden)"}
    step, layers, sample_ids, states = found
    chosen = [row_of[sample_id] for sample_id in sample_ids]
    images = image_ids(trace.samples)[chosen]
    attributes = {}
    for name, value in ATTRIBUTES.items():
        labels = [value(truth) if (truth := truths[row]) is not None else None for row in chosen]
        role = "asked" if name == asked else "control" if name == control else "not asked"
        attributes[name] = {"role": role, **attribute_probe(states, labels, images, layers, step)}
    return {
        **entry,
        "step": step,
        "n_samples": len(chosen),
        "n_images": len(np.unique(images)),
        "attributes": attributes,
    }


def probes(trace: Trace) -> dict[str, Any]:
    """summary.json's ``probes`` (module doc): one entry per prompt, or {"not computed": why}."""
    truths = ground_truths(trace)
    if not any(truth is not None and shapes_objects(truth) for truth in truths):
        return {"not computed": "no shapes-world ground truth in the samples (objects and their attributes)"}
    if not any(hidden_path(trace.directory, s).is_file() for s in trace.sample_ids):
        return {"not computed": "no stored hidden states (trace with --keep-hidden)"}
    by_prompt: dict[str, list[int]] = {}
    for row, prompt in enumerate(trace.samples["prompt"]):
        by_prompt.setdefault(str(prompt), []).append(row)
    return {
        "state": STATE,
        "classifier": CLASSIFIER,
        "cross_validation": "GroupKFold by image (held-out images), at most 5 folds",
        "interval": "Wilson 95%, n = images",
        "chance": "the majority class's share",
        "prompts": [prompt_probes(trace, prompt, rows, truths) for prompt, rows in by_prompt.items()],
    }
