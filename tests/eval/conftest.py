"""Shared fixtures of the eval tests: a shapes scene, a generation's tokens, a labelled trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evolens.analysis import load_trace
from evolens.data.shapes import Background, Scene, ShapeObject
from tests.analysis.synthetic import planted_sample, write_trace


def shape(kind: str, color: str) -> ShapeObject:
    return ShapeObject(kind, color, "large", "center", (0.5, 0.5), 0.1, (0, 0, 0))


SCENE = Scene(7, Background("white", "plain"), (shape("circle", "red"), shape("star", "blue")))
TOKENS = [
    "The", " image", " shows", " a", " red", " cir", "cle", " and", " a", " green", " star", ".",
    " There", " is", " no", " blue", " square", ".", " A", " purple", " shape", ".",
]  # fmt: skip


BLUE_ID, PURPLE_ID = 7001, 7002


@pytest.fixture()
def labelled_trace(tmp_path: Path):
    """Two samples over 6 layers whose words have known curves: hallucinated words jump at layer 6."""
    n_layers, tokens = 6, TOKENS[:12]
    jsd = np.tile([0.5, 0.02, 0.02, 0.02, 0.02, 0.15], (len(tokens), 1))
    jsd[9, 5] = 0.6  # "green" (hallucinated) changes a lot at the last layer
    prob = np.tile([0.0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.9], (len(tokens), 1))
    prob[9, 1] = 0.1  # and is unlikely at the critical layer
    rank = np.zeros_like(prob, dtype=np.int64)
    rank[9, :6] = 3  # and was not top-1 before the last layer
    samples = [planted_sample(f"s{i}", jsd, prob, tokens=tokens, rank=rank) for i in range(2)]
    # just before the mutation layer (6), "green" was led by the correct colour " blue" (the star is blue)
    # in s0, by " purple" (another wrong word) in s1
    samples[0].topk_ids[9, 5, 0], samples[1].topk_ids[9, 5, 0] = BLUE_ID, PURPLE_ID
    directory = write_trace(tmp_path / "trace", samples)
    (directory / "vocab.json").write_text(json.dumps({str(BLUE_ID): " blue", str(PURPLE_ID): " purple"}))
    table_path = directory / "samples" / "part-00000.parquet"
    table = pd.read_parquet(table_path)
    table["ground_truth"] = json.dumps({"source": "shapes", **SCENE.to_dict()})
    table.to_parquet(table_path)
    return load_trace(directory), n_layers
