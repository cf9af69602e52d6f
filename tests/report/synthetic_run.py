"""A synthetic run folder for report tests: a trace following docs/trace-format.md (with a ``vocab.json`` of
its token strings), a summary.json (its curves, token strings, image effect against two null traces of the
same tokens and probes of a small shapes-world trace computed by the analysis' functions), a feature view,
a skip.json, a hallucination.json and a PNG figure, all made from random next-token distributions with
numpy alone. Sample ids, prompts, the vocabulary and the depth can be chosen (e.g.
hostile text, a 32-layer model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from evolens.analysis.distribution import layer_statistics, statistics_to_dict
from evolens.analysis.image_effect import image_effect
from evolens.analysis.probes import probes
from evolens.analysis.token_strings import TokenStrings
from evolens.io.trace import load_trace
from evolens.vocabulary import OVERVIEW
from tests.analysis.findings_traces import shapes_samples
from tests.analysis.synthetic import write_trace

VOCAB = [" red", " blue", " circle", " square", " a", " the", ".", " large", " small", " green", "\n", " is"]
N_LAYERS = 8
TOP_K = 3


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(-1)


def jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = (p + q) / 2
    return kl(p, m) / 2 + kl(q, m) / 2


def distributions(
    rng: np.random.Generator, n_steps: int, n_layers: int = N_LAYERS, vocab_size: int = len(VOCAB)
) -> np.ndarray:
    """(n_steps, L+1, V) distributions sharpening with depth towards a random token (the emitted one)."""
    logits = rng.normal(size=(n_steps, n_layers + 1, vocab_size))
    target = rng.integers(0, vocab_size, size=n_steps)
    depth = np.linspace(0, 6, n_layers + 1)
    logits[np.arange(n_steps), :, target] += depth
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def sample_tables(sample_id: str, dists: np.ndarray, vocab: list[str] = VOCAB) -> dict[str, list]:
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
        "token": [vocab[i] for i in emitted],
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


def analysed_numbers(trace_dir: Path) -> dict:
    """What the analysis writes into summary.json for the report besides the stages: the overview curves'
    per-layer statistics and the strings of the top-k tokens (computed by the analysis' own functions)."""
    trace = load_trace(trace_dir)
    statistics = layer_statistics(trace, n_boot=200, metrics=OVERVIEW)
    return {
        "distribution": statistics_to_dict(statistics, trace),
        "token_strings": TokenStrings(trace, use_tokenizer=False).of_ids(trace.topk()[0]),
    }


def write_null_trace(trace_dir: Path, out: Path, condition: str, shift: float) -> Path:
    """The trace's own tokens "scored" under ``condition``: log p(emitted) lowered by ``shift`` nats from
    sample 1 on (sample 0 unchanged), entropy raised by ``shift``; meta.json as evolens score writes it."""
    steps = pd.read_parquet(trace_dir / "steps")
    first = steps["sample_id"] == steps["sample_id"].iloc[0]
    factor = np.where(first, 1.0, np.exp(-shift))
    steps["prob"] = [np.asarray(p) * f for p, f in zip(steps["prob"], factor, strict=True)]
    steps["entropy"] = [np.asarray(h) + shift for h in steps["entropy"]]
    for folder in ("samples", "steps"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(steps, schema=pa.schema(STEP_TYPES)), out / "steps" / "part-00000.parquet"
    )
    pq.write_table(pq.read_table(trace_dir / "samples"), out / "samples" / "part-00000.parquet")
    meta = json.loads((trace_dir / "meta.json").read_text()) | {"mode": "score", "condition": condition}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def finding_numbers(root: Path, trace_dir: Path, n_layers: int) -> dict:
    """summary.json's ``image_effect`` (the trace against a 'blank' and a 'shuffled' null) and ``probes``
    (of a 6-image shapes-world trace with hidden states, ``n_layers`` deep), computed by the analysis."""
    trace = load_trace(trace_dir)
    nulls = {
        condition: load_trace(write_null_trace(trace_dir, root / "nulls" / condition, condition, shift))
        for condition, shift in (("blank", 0.7), ("shuffled", 0.3))
    }
    samples = shapes_samples(n_images=6, prompts=("color", "describe"), n_layers=n_layers)
    probed = probes(load_trace(write_trace(root / "probed", samples)))
    return {"image_effect": image_effect(trace, nulls, n_boot=100), "probes": probed}


def write_synthetic_run(
    root: Path,
    n_samples: int = 3,
    seed: int = 0,
    n_layers: int = N_LAYERS,
    vocab: list[str] = VOCAB,
    sample_ids: list[str] | None = None,
    prompts: list[str] | None = None,
    steps: list[int] | None = None,
) -> dict[str, Path]:
    """Write trace/, analysis/ (summary.json, features/, a figure), skip.json and hallucination.json under
    ``root``; sample i has id ``sample_ids[i]`` (default scene-i), prompt ``prompts[i]`` and ``steps[i]``
    generated tokens (default 5 + 2i)."""
    rng = np.random.default_rng(seed)
    sample_ids = sample_ids or [f"scene-{index}" for index in range(n_samples)]
    prompts = prompts or [
        "Describe this image." if index % 2 == 0 else "What is the color of the shape?"
        for index in range(n_samples)
    ]
    steps = steps or [5 + 2 * index for index in range(n_samples)]
    trace = root / "trace"
    for folder in ("samples", "steps"):
        (trace / folder).mkdir(parents=True, exist_ok=True)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    sample_rows = []
    for index, sample_id in enumerate(sample_ids):
        dists = distributions(rng, steps[index], n_layers, len(vocab))
        tables = sample_tables(sample_id, dists, vocab)
        pq.write_table(
            pa.table(tables, schema=pa.schema(STEP_TYPES)), trace / "steps" / f"part-{index:05d}.parquet"
        )
        image = images / f"image-{index}.png"
        Image.new("RGB", (64, 64), (40 * index % 255, 120, 200)).save(image)
        sample_rows.append(
            {
                "sample_id": sample_id,
                "image": str(image),
                "image_sha256": None,
                "prompt": prompts[index],
                "text": "".join(tables["token"]).strip(),
                "token_ids": tables["token_id"],
                "n_steps": len(tables["token_id"]),
                "ground_truth": None,
            }
        )
    pq.write_table(pa.Table.from_pylist(sample_rows), trace / "samples" / "part-00000.parquet")
    meta = {
        "model": "synthetic",
        "revision": None,
        "dtype": "float32",
        "lens": "normed",
        "n_layers": n_layers,
        "vocab_size": len(vocab),
        "top_k": TOP_K,
        "decoding": {"do_sample": False, "max_new_tokens": 16},
        "seed": 0,
        "versions": {"evolens": "test"},
        "created": "2026-01-01T00:00:00Z",
    }
    (trace / "meta.json").write_text(json.dumps(meta))
    (trace / "vocab.json").write_text(json.dumps(dict(enumerate(vocab))))

    analysis = root / "analysis"
    (analysis / "features").mkdir(parents=True, exist_ok=True)
    critical, mutation = n_layers * 3 // 8, n_layers  # the mutation stage is one layer: "layer L"
    summary = {
        "n_layers": n_layers,
        "critical_layer": critical,
        "critical_layer_ci": [critical - 1.0, critical + 1.0],
        "mutation_layer": mutation,
        "stages": [
            {"name": "rapid_evolution", "start": 0, "end": critical - 1},
            {"name": "stabilization", "start": critical, "end": mutation - 1},
            {"name": "mutation", "start": mutation, "end": n_layers},
        ],
        "stage_search": {
            "method": "change points against the nulls (synthetic)",
            "verdicts": [
                f"boundaries: layer {critical}; layer {mutation}",
                f"critical layer: {critical} (stabilization starts; found in 90% of replicates)",
                f"mutation stage: layer {mutation} (found in 60% of replicates, 95% interval {mutation} to "
                "not found)",
            ],
            "scopes": {
                "all": {
                    "critical_layer": {"layer": critical, "interval": [critical - 1, critical + 1]},
                    "mutation_layer": {"layer": mutation, "interval": [mutation, None]},
                }
            },
        },
        "jsd_threshold": 0.05,
        "notes": ["prompt 'What is the color of the shape?': 1 of 3 images never said an answer word"],
        **analysed_numbers(trace),
        **finding_numbers(root, trace, n_layers),
    }
    (analysis / "summary.json").write_text(json.dumps(summary))
    n_points = 4 * (n_layers + 1)
    view = {
        "title": "one image, every token",
        "method": "tsne",
        "x": rng.normal(size=n_points).tolist(),
        "y": rng.normal(size=n_points).tolist(),
        "layer": [i % (n_layers + 1) for i in range(n_points)],
        "group": [f"token {i // (n_layers + 1)}" for i in range(n_points)],
    }
    (analysis / "features" / "tsne_tokens.json").write_text(json.dumps(view))
    Image.new("RGB", (120, 80), (200, 180, 240)).save(analysis / "heatmap.png")
    skip_path = root / "skip.json"
    skip_path.write_text(json.dumps(skip_record(sample_ids, n_layers, critical, mutation)))
    hallucination_path = root / "hallucination.json"
    hallucination_path.write_text(json.dumps(hallucination_record(n_layers, critical, mutation)))
    return {"trace": trace, "analysis": analysis, "skip": skip_path, "hallucination": hallucination_path}


def stat(mean: float | None, half_width: float = 0.05, n: int = 4) -> dict:
    """A statistic with its interval as skip.json writes it."""
    if mean is None:
        return {"mean": None, "low": None, "high": None, "n": 0}
    return {"mean": mean, "low": max(0.0, mean - half_width), "high": min(1.0, mean + half_width), "n": n}


def skip_record(sample_ids: list[str], n_layers: int, critical: int, mutation: int, seeds: int = 3) -> dict:
    """A skip.json (schema evolens.skip/1): baseline, two stage conditions, ``seeds`` random controls each."""
    plans = [
        ("baseline", "baseline", [], None, None, 1.0),
        ("skip stabilization", "stage", list(range(critical, mutation - 1)), None, None, 0.91),
        ("skip mutation", "stage", [mutation - 1], None, None, 0.75),
    ]
    for name, _, layers, _, _, _ in list(plans[1:]):
        for seed in range(seeds):
            plans.append((f"random-{name}-s{seed}", "random", layers, name, seed, 0.1 * seed))
    conditions = []
    for name, kind, layers, control_of, seed, agreement in plans:
        conditions.append(
            {
                "name": name,
                "kind": kind,
                "skipped": layers,
                "n_skipped": len(layers),
                "control_of": control_of,
                "seed": seed,
                "wall_time_s": 2.0,
                "n_generated_tokens": 40,
                "speedup": 1.0 + len(layers) / n_layers,
                "speedup_per_token": 1.0 + len(layers) / n_layers,
                "token_agreement": stat(agreement),
                "edit_distance": stat(1 - agreement),
                "accuracy": stat(None),
                "chair_i": stat(None),
                "chair_s": stat(None),
                "samples": [
                    {
                        "sample_id": sample_id,
                        "text": f"output of {name} on {sample_id}",
                        "n_tokens": 10,
                        "token_agreement": agreement,
                        "edit_distance": 1 - agreement,
                        "correct": None,
                        "n_mentions": 0,
                        "n_hallucinated": 0,
                    }
                    for sample_id in sample_ids
                ],
            }
        )
    return {
        "schema": "evolens.skip/1",
        "model": "synthetic",
        "n_layers": n_layers,
        "max_new_tokens": 16,
        "n_samples": len(sample_ids),
        "random_seeds": list(range(seeds)),
        "failures": ["scene-x: image could not be read"],
        "stages": None,
        "conditions": conditions,
    }


def hallucination_record(n_layers: int, critical: int, mutation: int) -> dict:
    """A hallucination.json (schema evolens.hallucination/1) with shapes-world scores and word AUROCs."""
    feature = {"auroc": 0.263, "low": 0.201, "high": 0.327, "n_faithful": 307, "n_hallucinated": 87}
    return {
        "schema": "evolens.hallucination/1",
        "model": "synthetic",
        "n_samples": 4,
        "shapes": {
            "n_samples": 4,
            "descriptions": {
                "chair_i": 0.354,
                "chair_s": 0.325,
                "object_hallucination": 0.02,
                "attribute_hallucination": 0.33,
                "precision": 0.646,
                "recall": 0.4,
                "n": 4,
            },
            "accuracy": {"color": {"accuracy": 0.75, "n": 4}},
        },
        "coco": None,
        "words": {
            "n_words": 394,
            "n_hallucinated": 87,
            "by_kind": {"color": {"n": 203, "hallucinated": 83}, "shape": {"n": 191, "hallucinated": 4}},
            "features": {"jsd_mutation": feature},
            "feature_means": {"jsd_mutation": {"faithful": 0.427, "hallucinated": 0.343}},
            "curves": {
                "faithful": {"jsd_next": [0.1] * n_layers, "prob": [0.5] * (n_layers + 1)},
                "hallucinated": {"jsd_next": [0.2] * n_layers, "prob": [0.4] * (n_layers + 1)},
            },
            "stages": {"critical_layer": critical, "mutation_layer": mutation},
        },
        "notes": ["AMBER samples: score them with `evolens hallucination amber` (AMBER's files)"],
    }
