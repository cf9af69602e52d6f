"""Traces for the image-effect and probe tests: a small shapes world (ground truth, hidden states that carry
the colour from layer 2 and the shape from layer 4 on), and null traces of the same tokens whose metrics
differ from the real ones by known amounts. Written with ``tests.analysis.synthetic.write_trace``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tests.analysis.synthetic import SampleArrays, metrics_from_distributions, write_trace

N_LAYERS = 6
COLOR_FROM, SHAPE_FROM = 2, 4
COLORS = ("red", "green", "blue")
SHAPES = ("circle", "square")
PROMPTS = {"color": "What is the color of the shape?", "describe": "Describe this image."}
VOCAB = [f" w{i}" for i in range(24)]


def scene(index: int) -> dict:
    """The ground truth of image ``index``: one object; colours cycle with period 3, shapes with 2."""
    obj = {
        "color": COLORS[index % 3],
        "shape": SHAPES[(index // 3) % 2],
        "position": "center",
        "size": "small",
    }
    return {"source": "shapes", "seed": index, "objects": [obj]}


def states(
    rng: np.random.Generator, truth: dict, n_steps: int, d: int = 16, n_layers: int = N_LAYERS
) -> np.ndarray:
    """(n_steps, L+1, d): layer 0 the same for every image (the prompt's last token), then noise, the
    colour's direction from ``COLOR_FROM`` on and the shape's from ``SHAPE_FROM`` on."""
    directions = np.random.default_rng(123).normal(size=(len(COLORS) + len(SHAPES), d))
    obj = truth["objects"][0]
    colour = directions[COLORS.index(obj["color"])]
    shape = directions[len(COLORS) + SHAPES.index(obj["shape"])]
    hidden = rng.normal(scale=0.5, size=(n_steps, n_layers + 1, d))
    hidden[:, 0] = 1.0
    hidden[:, COLOR_FROM:] += 3 * colour
    hidden[:, SHAPE_FROM:] += 3 * shape
    return hidden.astype(np.float32)


def shapes_samples(
    n_images: int = 12, prompts: tuple[str, ...] = ("color",), seed: int = 0, n_layers: int = N_LAYERS
) -> list[SampleArrays]:
    """Every image asked every prompt (ids ``img<i>-<prompt>``), 3-5 generated steps each."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(n_images):
        truth = scene(index)
        for tag in prompts:
            n_steps = 3 + (index % 3)
            logits = (
                rng.normal(size=(n_steps, n_layers + 1, len(VOCAB)))
                * np.linspace(0.3, 3, n_layers + 1)[None, :, None]
            )
            dists = np.exp(logits - logits.max(-1, keepdims=True))
            dists /= dists.sum(-1, keepdims=True)
            sample = metrics_from_distributions(
                f"img{index}-{tag}",
                PROMPTS[tag],
                dists,
                VOCAB,
                k=3,
                hidden=states(rng, truth, n_steps, n_layers=n_layers),
            )
            sample.image = f"/images/img{index}.png"
            sample.extra["ground_truth"] = json.dumps(truth)
            samples.append(sample)
    return samples


def null_of(samples: list[SampleArrays], prob_factor: dict[str, float], entropy_shift: float = 0.25) -> list:
    """The same tokens under a null: p(emitted) times the sample's image's factor (``prob_factor`` by image
    path), entropy + ``entropy_shift``; the other metrics unchanged; no hidden states."""
    return [
        dataclasses.replace(
            s,
            prob=s.prob * prob_factor[s.image or ""],
            entropy=s.entropy + entropy_shift,
            hidden=None,
            extra=dict(s.extra),
        )
        for s in samples
    ]


def write_null(directory: Path, samples: list[SampleArrays], condition: str) -> Path:
    """A null trace as ``evolens score --from`` records it (mode "score", its condition)."""
    return write_trace(directory, samples, mode="score", condition=condition)
