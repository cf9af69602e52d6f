"""Build valid trace directories from numpy arrays, following docs/trace-format.md exactly.

Two ways in: ``metrics_from_distributions`` turns per-layer next-token distributions into every metric
column with independent, straightforward numpy (so tests can check the analyses against known values),
and ``planted_sample`` writes given curves (e.g. JSD high until layer 12) so the stage detector can be
tested on known answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save_file

LN2 = float(np.log(2.0))


@dataclass
class SampleArrays:
    """Every column of one sample. n = steps, L = layers, k = top-k.

    Attributes:
        prob, rank, entropy, jsd_last, kl_last: (n, L+1).
        jsd_next, paper_js: (n, L); paper_js may be None (not recorded, as with the normed lens by default).
        topk_ids, topk_probs: (n, L+1, k).
        tokens: n decoded tokens; token_ids: (n,).
        hidden: optional (n, L+1, d) states, written to hidden/<sample_id>.safetensors.
        extra: optional sample columns: "ground_truth" (a JSON string).
    """

    sample_id: str
    prompt: str
    tokens: list[str]
    token_ids: np.ndarray
    prob: np.ndarray
    rank: np.ndarray
    entropy: np.ndarray
    jsd_next: np.ndarray
    jsd_last: np.ndarray
    kl_last: np.ndarray
    paper_js: np.ndarray | None
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    image: str | None = None
    hidden: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) over the last axis, natural log, 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Standard Jensen-Shannon divergence over the last axis: 1/2 KL(p||m) + 1/2 KL(q||m)."""
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def paper_js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The released scripts' "JS": 1/2 [KL(M||P) + KL(M||Q)] with the terms averaged over the vocabulary."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = m * (np.log(m) - np.log(p)) + m * (np.log(m) - np.log(q))
    return 0.5 * terms.mean(-1)


def metrics_from_distributions(
    sample_id: str, prompt: str, dists: np.ndarray, vocab: list[str], k: int = 5, **extra
) -> SampleArrays:
    """All metric columns of one greedy sample from its lens distributions.

    Args:
        dists: (n, L+1, V) next-token distributions p_l per step and lens layer (rows sum to 1).
        vocab: V token strings; the emitted token of each step is the argmax of the last layer.
    """
    layers = dists.shape[1]
    emitted = dists[:, -1].argmax(-1)
    prob = np.take_along_axis(dists, emitted[:, None, None].repeat(layers, 1), -1)[..., 0]
    rank = (dists > prob[..., None]).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(dists > 0, dists * np.log(dists), 0.0).sum(-1)
    last = dists[:, -1:, :]
    order = np.argsort(-dists, axis=-1, kind="stable")[..., :k]
    return SampleArrays(
        sample_id=sample_id,
        prompt=prompt,
        tokens=[vocab[i] for i in emitted],
        token_ids=emitted,
        prob=prob,
        rank=rank,
        entropy=entropy,
        jsd_next=jsd(dists[:, :-1], dists[:, 1:]),
        jsd_last=jsd(dists, np.broadcast_to(last, dists.shape)),
        kl_last=_kl(np.broadcast_to(last, dists.shape), dists),
        paper_js=paper_js(dists[:, :-1], dists[:, 1:]),
        topk_ids=order,
        topk_probs=np.take_along_axis(dists, order, -1),
        **extra,
    )


def planted_sample(
    sample_id: str,
    jsd_next: np.ndarray,
    prob: np.ndarray,
    tokens: list[str] | None = None,
    prompt: str = "Describe this image.",
    rank: np.ndarray | None = None,
    k: int = 3,
    seed: int = 0,
) -> SampleArrays:
    """A sample whose JSD and emitted-token probability curves are exactly the given ones.

    Args:
        jsd_next: (n, L) consecutive-layer JSD; prob: (n, L+1) emitted-token probability.
        rank: (n, L+1) or None (then 0 where prob > 0.5, else 1 + a layer-dependent offset).
    The other columns are consistent enough to be plotted (entropy, top-k holding the emitted token).
    """
    n, transitions = jsd_next.shape
    rng = np.random.default_rng(seed)
    tokens = tokens or [f" w{i}" for i in range(n)]
    token_ids = np.arange(100, 100 + n)
    if rank is None:
        rank = np.where(prob > 0.5, 0, 1 + np.round(10 * (1 - prob))).astype(np.int64)
    topk_ids = rng.integers(1000, 2000, size=(n, transitions + 1, k))
    topk_ids[..., 0] = np.where(rank == 0, token_ids[:, None], topk_ids[..., 0])
    topk_probs = np.sort(rng.uniform(0, 0.2, size=(n, transitions + 1, k)), -1)[..., ::-1].copy()
    topk_probs[..., 0] = np.maximum(prob, topk_probs[..., 0])
    return SampleArrays(
        sample_id=sample_id,
        prompt=prompt,
        tokens=tokens,
        token_ids=token_ids,
        prob=prob,
        rank=rank,
        entropy=-np.log(np.clip(prob, 1e-6, 1)),
        jsd_next=jsd_next,
        jsd_last=np.concatenate([np.cumsum(jsd_next[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1).clip(0, LN2),
        kl_last=np.concatenate([np.cumsum(jsd_next[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1) * 2,
        paper_js=jsd_next / 1000.0,
        topk_ids=topk_ids,
        topk_probs=topk_probs,
    )


def _list_column(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    return pa.array([row.tolist() for row in values], type=pa.list_(dtype))


def write_trace(
    directory: Path,
    samples: list[SampleArrays],
    model: str = "synthetic",
    lens: str = "normed",
    groups: list[str | None] | None = None,
    **meta,
) -> Path:
    """Write ``samples`` as a trace directory (meta.json, samples/, steps/, hidden/); returns it.
    ``groups``: a ``group`` label per sample (a class subfolder), None for a sample without one."""
    directory.mkdir(parents=True, exist_ok=True)
    n_layers = samples[0].jsd_next.shape[1]
    k = samples[0].topk_ids.shape[2]
    meta_out = {
        "model": model,
        "revision": None,
        "dtype": "float32",
        "lens": lens,
        "n_layers": n_layers,
        "vocab_size": 50_000,
        "top_k": k,
        "decoding": {"do_sample": False, "max_new_tokens": 64},
        "seed": 0,
        "versions": {"evolens": "test"},
        "created": "2026-01-01T00:00:00Z",
    } | meta
    (directory / "meta.json").write_text(json.dumps(meta_out))
    for folder in ("samples", "steps"):
        (directory / folder).mkdir(exist_ok=True)
    sample_table = pa.table(
        {
            "sample_id": pa.array([s.sample_id for s in samples], pa.string()),
            "image": pa.array([s.image for s in samples], pa.string()),
            "image_sha256": pa.array([None for _ in samples], pa.string()),
            "prompt": pa.array([s.prompt for s in samples], pa.string()),
            "text": pa.array(["".join(s.tokens).strip() for s in samples], pa.string()),
            "token_ids": pa.array([s.token_ids.tolist() for s in samples], pa.list_(pa.int32())),
            "n_steps": pa.array([len(s.tokens) for s in samples], pa.int32()),
            "ground_truth": pa.array([s.extra.get("ground_truth") for s in samples], pa.string()),
        }
    )
    if groups is not None:
        sample_table = sample_table.append_column("group", pa.array(groups, pa.string()))
    pq.write_table(sample_table, directory / "samples" / "part-00000.parquet")
    for index, s in enumerate(samples):
        n = len(s.tokens)
        steps = pa.table(
            {
                "sample_id": pa.array([s.sample_id] * n, pa.string()),
                "step": pa.array(np.arange(n), pa.int32()),
                "token_id": pa.array(s.token_ids, pa.int32()),
                "token": pa.array(s.tokens, pa.string()),
                "prob": _list_column(s.prob, pa.float32()),
                "rank": _list_column(s.rank, pa.int32()),
                "entropy": _list_column(s.entropy, pa.float32()),
                "jsd_next": _list_column(s.jsd_next, pa.float32()),
                "jsd_last": _list_column(s.jsd_last, pa.float32()),
                "kl_last": _list_column(s.kl_last, pa.float32()),
                "paper_js": pa.array([None] * n, pa.list_(pa.float32()))
                if s.paper_js is None
                else _list_column(s.paper_js, pa.float32()),
                "topk_ids": pa.array(
                    [[r.tolist() for r in row] for row in s.topk_ids], pa.list_(pa.list_(pa.int32()))
                ),
                "topk_probs": pa.array(
                    [[r.tolist() for r in row] for row in s.topk_probs], pa.list_(pa.list_(pa.float32()))
                ),
            }
        )
        pq.write_table(steps, directory / "steps" / f"part-{index:05d}.parquet")
        if s.hidden is not None:
            (directory / "hidden").mkdir(exist_ok=True)
            save_file(
                {"hidden": s.hidden.astype(np.float16)},
                str(directory / "hidden" / f"{s.sample_id}.safetensors"),
            )
    return directory


def sigmoid_curve(n_layers: int, midpoint: float, width: float = 0.7, top: float = 0.95) -> np.ndarray:
    """(L+1,) a probability that rises from ~0 to ``top`` around ``midpoint``."""
    layers = np.arange(n_layers + 1)
    return top / (1 + np.exp(-(layers - midpoint) / width))
