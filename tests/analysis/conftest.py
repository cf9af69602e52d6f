"""Trace directories for the analysis tests: exact metrics from random distributions, and planted curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from evolens.io.trace import Trace, load_trace
from tests.analysis.synthetic import (
    SampleArrays,
    metrics_from_distributions,
    planted_sample,
    sigmoid_curve,
    write_trace,
)

N_LAYERS = 6
VOCAB = [
    " the",
    " red",
    " circle",
    " is",
    " on",
    ".",
    " a",
    " blue",
    " square",
    ",",
    " shape",
    "ing",
    " big",
    "<|im_end|>",
]
VOCAB += [f" w{i}" for i in range(40 - len(VOCAB))]


@dataclass
class ExactTrace:
    """A trace written from known distributions: ``dists[sample_id]`` is (n_steps, L+1, V)."""

    trace: Trace
    dists: dict[str, np.ndarray]
    samples: list[SampleArrays]


def random_distributions(rng: np.random.Generator, n_steps: int, n_layers: int, vocab: int) -> np.ndarray:
    """(n_steps, L+1, V) distributions that sharpen with depth, so later layers agree more."""
    logits = rng.normal(size=(n_steps, 1, vocab)) * 3 + rng.normal(size=(n_steps, n_layers + 1, vocab))
    logits *= np.linspace(0.3, 2.0, n_layers + 1)[None, :, None]
    dists = np.exp(logits - logits.max(-1, keepdims=True))
    return dists / dists.sum(-1, keepdims=True)


@pytest.fixture(scope="session")
def exact_trace(tmp_path_factory: pytest.TempPathFactory) -> ExactTrace:
    """3 samples (5, 7 and 4 steps), L = 6, V = 40, hidden states (d = 8) for all, vocab.json."""
    rng = np.random.default_rng(0)
    directory = tmp_path_factory.mktemp("exact") / "trace"
    dists, samples = {}, []
    for index, n_steps in enumerate((5, 7, 4)):
        sample_id = f"img-{index}"
        dists[sample_id] = random_distributions(rng, n_steps, N_LAYERS, len(VOCAB))
        hidden = rng.normal(size=(n_steps, N_LAYERS + 1, 8)).astype(np.float32)
        samples.append(
            metrics_from_distributions(
                sample_id, "What is the color of the circle?", dists[sample_id], VOCAB, k=4, hidden=hidden
            )
        )
    write_trace(directory, samples)
    (directory / "vocab.json").write_text(json.dumps(dict(enumerate(VOCAB))))
    return ExactTrace(load_trace(directory), dists, samples)


def planted_trace_samples(
    n_samples: int = 4, n_steps: int = 8, n_layers: int = 30, seed: int = 0
) -> list[SampleArrays]:
    """Samples whose curves settle at layer 12 and jump again at layer 27 (small noise)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(1, n_layers + 1, 12))
    depth = np.linspace(0, 1, n_layers + 1)[None, :, None]
    samples = []
    for index in range(n_samples):
        jsd = np.full((n_steps, n_layers), 0.01)
        jsd[:, :12] = 0.4
        jsd[:, 26] = 0.35
        jsd += rng.uniform(0, 0.01, jsd.shape)
        prob = np.stack([sigmoid_curve(n_layers, 11.5)] * n_steps)
        tokens = [" The", " red", " circle", " is", " big", ".", " The", "<|im_end|>"][:n_steps]
        sample = planted_sample(
            f"shape-{index}", jsd, prob, tokens=tokens, prompt="What is the color of the shape?"
        )
        # states shared by all images at shallow layers, separated by image at deep layers
        own = rng.normal(size=(1, 1, 12)) * 3
        noise = rng.normal(size=(n_steps, n_layers + 1, 12)) * 0.01
        sample.hidden = (shared + depth**2 * own + noise).astype(np.float32)
        samples.append(sample)
    return samples


@pytest.fixture(scope="session")
def planted_trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-layer trace of 4 images asked the colour question: critical layer 12, mutation layer 27."""
    return write_trace(
        tmp_path_factory.mktemp("planted") / "trace", planted_trace_samples(), model="synthetic-vlm"
    )
