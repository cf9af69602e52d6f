"""A synthetic run folder for report tests: a trace following docs/trace-format.md (with a ``vocab.json`` of
its 12 token strings), a summary.json, a feature view, a skip.json and a PNG figure, all made from random
next-token distributions with numpy alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

VOCAB = [" red", " blue", " circle", " square", " a", " the", ".", " large", " small", " green", "\n", " is"]
N_LAYERS = 8
TOP_K = 3


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(-1)


def jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = (p + q) / 2
    return kl(p, m) / 2 + kl(q, m) / 2


def distributions(rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """(n_steps, L+1, V) distributions sharpening with depth towards a random token (the emitted one)."""
    logits = rng.normal(size=(n_steps, N_LAYERS + 1, len(VOCAB)))
    target = rng.integers(0, len(VOCAB), size=n_steps)
    depth = np.linspace(0, 6, N_LAYERS + 1)
    logits[np.arange(n_steps), :, target] += depth
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def sample_tables(sample_id: str, dists: np.ndarray) -> dict[str, list]:
    emitted = dists[:, -1].argmax(-1)
    prob = dists[np.arange(len(emitted)), :, emitted]
    order = np.argsort(-dists, -1, kind="stable")
    rank = (dists > prob[..., None]).sum(-1)
    last = np.broadcast_to(dists[:, -1:], dists.shape)
    topk = order[..., :TOP_K]
    return {
        "sample_id": [sample_id] * len(emitted),
        "step": list(range(len(emitted))),
        "token_id": emitted.tolist(),
        "token": [VOCAB[i] for i in emitted],
        "prob": prob.tolist(),
        "rank": rank.tolist(),
        "entropy": (-(dists * np.log(dists)).sum(-1)).tolist(),
        "jsd_next": jsd(dists[:, :-1], dists[:, 1:]).tolist(),
        "jsd_last": jsd(dists, last).tolist(),
        "kl_last": kl(last, dists).tolist(),
        "paper_js": (jsd(dists[:, :-1], dists[:, 1:]) / 100).tolist(),
        "topk_ids": topk.tolist(),
        "topk_probs": np.take_along_axis(dists, topk, -1).tolist(),
    }


STEP_TYPES = {
    "sample_id": pa.string(),
    "step": pa.int32(),
    "token_id": pa.int32(),
    "token": pa.string(),
    "prob": pa.list_(pa.float32()),
    "rank": pa.list_(pa.int32()),
    "entropy": pa.list_(pa.float32()),
    "jsd_next": pa.list_(pa.float32()),
    "jsd_last": pa.list_(pa.float32()),
    "kl_last": pa.list_(pa.float32()),
    "paper_js": pa.list_(pa.float32()),
    "topk_ids": pa.list_(pa.list_(pa.int32())),
    "topk_probs": pa.list_(pa.list_(pa.float32())),
}


def write_synthetic_run(root: Path, n_samples: int = 3, seed: int = 0) -> dict[str, Path]:
    """Write trace/, analysis/ (summary.json, features/, a figure) and skip.json under ``root``."""
    rng = np.random.default_rng(seed)
    trace = root / "trace"
    for folder in ("samples", "steps"):
        (trace / folder).mkdir(parents=True, exist_ok=True)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    sample_rows = []
    for index in range(n_samples):
        sample_id = f"scene-{index}"
        dists = distributions(rng, n_steps=5 + 2 * index)
        steps = sample_tables(sample_id, dists)
        pq.write_table(
            pa.table(steps, schema=pa.schema(STEP_TYPES)), trace / "steps" / f"part-{index:05d}.parquet"
        )
        image = images / f"{sample_id}.png"
        Image.new("RGB", (64, 64), (40 * index % 255, 120, 200)).save(image)
        sample_rows.append(
            {
                "sample_id": sample_id,
                "image": str(image),
                "image_sha256": None,
                "prompt": "Describe this image." if index % 2 == 0 else "What is the color of the shape?",
                "text": "".join(steps["token"]).strip(),
                "token_ids": steps["token_id"],
                "n_steps": len(steps["token_id"]),
                "ground_truth": None,
            }
        )
    pq.write_table(pa.Table.from_pylist(sample_rows), trace / "samples" / "part-00000.parquet")
    meta = {
        "model": "synthetic",
        "revision": None,
        "dtype": "float32",
        "lens": "normed",
        "n_layers": N_LAYERS,
        "vocab_size": len(VOCAB),
        "top_k": TOP_K,
        "decoding": {"do_sample": False, "max_new_tokens": 16},
        "seed": 0,
        "versions": {"evolens": "test"},
        "created": "2026-01-01T00:00:00Z",
    }
    (trace / "meta.json").write_text(json.dumps(meta))
    (trace / "vocab.json").write_text(json.dumps(dict(enumerate(VOCAB))))

    analysis = root / "analysis"
    (analysis / "features").mkdir(parents=True, exist_ok=True)
    summary = {
        "n_layers": N_LAYERS,
        "critical_layer": 3,
        "critical_layer_ci": [2.0, 4.0],
        "mutation_layer": 7,
        "stages": [
            {"name": "rapid evolution", "start": 0, "end": 2},
            {"name": "stabilization", "start": 3, "end": 6},
            {"name": "mutation", "start": 7, "end": 8},
        ],
        "jsd_threshold": 0.05,
    }
    (analysis / "summary.json").write_text(json.dumps(summary))
    n_points = 4 * (N_LAYERS + 1)
    view = {
        "title": "t-SNE: one image, every token",
        "x": rng.normal(size=n_points).tolist(),
        "y": rng.normal(size=n_points).tolist(),
        "layer": [i % (N_LAYERS + 1) for i in range(n_points)],
        "group": [f"token {i // (N_LAYERS + 1)}" for i in range(n_points)],
    }
    (analysis / "features" / "tsne_tokens.json").write_text(json.dumps(view))
    Image.new("RGB", (120, 80), (200, 180, 240)).save(analysis / "heatmap.png")
    skip = {
        "baseline": "no layers skipped",
        "conditions": [
            {
                "condition": "skip stabilization",
                "layers": [3, 6],
                "token_agreement": 0.91,
                "edit_distance": 0.12,
            },
            {"condition": "skip mutation", "layers": [7, 7], "token_agreement": 0.75, "edit_distance": 0.3},
        ],
    }
    skip_path = root / "skip.json"
    skip_path.write_text(json.dumps(skip))
    return {"trace": trace, "analysis": analysis, "skip": skip_path}
