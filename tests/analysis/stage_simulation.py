"""Synthetic trace sets with planted stage boundaries (or none), written through the real trace store.

A set is a few samples whose tokens go through regimes of change: in a *fast* regime each layer moves the
next-token distribution a lot (Δ around 0.2-0.35 nats) and the emitted token's logit (far below 0, so ln p
moves with it) by a random step of sd 0.6-1.0; in a *slow* one Δ is 0.02-0.08 and the logit steps
0.02-0.1. A planted boundary is a layer where
the regime changes (fast and slow alternate, as rapid evolution, stabilization and mutation do). Null-like
sets have one regime throughout: steady, with noise correlated across layers, or with the emitted token's
log-probability rising at a constant pace (a smooth ramp of ln p, no change of pace). A "shared" set plants
boundaries in the trace and in its null trace alike (the image changes nothing).

All sets of one depth go into one trace directory (one part per trace, through ``io.store.write_part``)
and are read back with ``load_trace``; ``split_sets`` cuts each set out as a ``Trace``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evolens.io.store import SampleRecord, TraceWriter, write_part
from evolens.io.trace import Trace, load_trace
from tests.analysis.synthetic import LN2, planted_sample

FAST = ((0.2, 0.35), (0.6, 1.0))
SLOW = ((0.02, 0.08), (0.02, 0.1))
"""(Δ level range, logit step sd range) of each regime."""


@dataclass
class SimSet:
    """One synthetic trace set.

    Attributes:
        name: the sample-id prefix of its samples ("set-0042").
        kind: "planted", "planted+null", "steady", "smooth", "drift", "shared".
        n_layers: L.
        planted: the layers where a planted regime starts (empty for a null-like set).
        records, null_records: its samples, and its null trace's (the same ids and tokens) or empty.
    """

    name: str
    kind: str
    n_layers: int
    planted: tuple[int, ...]
    records: list[SampleRecord] = field(default_factory=list)
    null_records: list[SampleRecord] = field(default_factory=list)


def boundaries(rng: np.random.Generator, n_layers: int, count: int) -> tuple[int, ...]:
    """``count`` regime starts in 4..L-1, at least 3 layers apart (every segment of layers 2..L has >= 2)."""
    while True:
        chosen = tuple(sorted(int(b) for b in rng.choice(np.arange(4, n_layers), count, replace=False)))
        if all(b - a >= 3 for a, b in itertools.pairwise(chosen)):
            return chosen


def regimes(rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    """(Δ level, logit step sd) of ``count`` alternating regimes, fast or slow first."""
    first = int(rng.integers(2))
    return [tuple(rng.uniform(*bounds) for bounds in (FAST, SLOW)[(first + i) % 2]) for i in range(count)]  # type: ignore[misc]


def token_curves(
    rng: np.random.Generator,
    n_layers: int,
    starts: tuple[int, ...],
    levels: list[tuple[float, float]],
    n_steps: int,
    jsd_noise: float,
    ar: float = 0.0,
    drift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(jsd_next (n_steps, L), prob (n_steps, L+1)) of one sample's tokens; layer l's regime is the number
    of ``starts`` <= l."""
    layers = np.arange(1, n_layers + 1)
    regime = np.searchsorted(np.asarray(starts), layers, side="right")
    level = np.array([levels[r][0] for r in regime])
    step = np.array([levels[r][1] for r in regime])
    noise = rng.normal(size=(n_steps, n_layers))
    for layer in range(1, n_layers):  # AR(1) across layers, unit variance
        noise[:, layer] = ar * noise[:, layer - 1] + np.sqrt(1 - ar**2) * noise[:, layer]
    jsd = np.clip(level + jsd_noise * noise, 1e-4, LN2)
    # the logit starts far below 0, so that ln p moves with it step for step (p << 1/2: rank and the pace of
    # ln p do not drift as a walk spreads), and a regime's changes keep one size from layer to layer
    start = rng.normal(-12.0, 1.0, size=(n_steps, 1))
    if drift:  # ln p rises by ``drift`` per layer
        log_prob = start + drift * np.arange(n_layers + 1) + 0.05 * rng.normal(size=(n_steps, n_layers + 1))
        return jsd, np.exp(log_prob)
    increments = step * rng.normal(size=(n_steps, n_layers))
    logit = start + np.concatenate([np.zeros((n_steps, 1)), np.cumsum(increments, axis=1)], axis=1)
    return jsd, 1.0 / (1.0 + np.exp(-logit))


def sample_record(sample_id: str, image: str, jsd: np.ndarray, prob: np.ndarray) -> SampleRecord:
    """A store record of planted curves: the other metrics as ``synthetic.planted_sample`` makes them, but
    the entropy is -ln p without its floor (a floor would make the walk's changes shrink with depth)."""
    arrays = planted_sample(sample_id, jsd, prob)
    arrays.entropy = -np.log(prob)
    return SampleRecord(
        sample_id=sample_id,
        image=image,
        prompt=arrays.prompt,
        text="".join(arrays.tokens),
        token_ids=arrays.token_ids.tolist(),
        tokens=arrays.tokens,
        metrics={
            "prob": arrays.prob.astype(np.float32),
            "rank": arrays.rank.astype(np.int32),
            "entropy": arrays.entropy.astype(np.float32),
            "jsd_next": arrays.jsd_next.astype(np.float32),
            "jsd_last": arrays.jsd_last.astype(np.float32),
            "kl_last": arrays.kl_last.astype(np.float32),
            "paper_js": None,
            "topk_ids": arrays.topk_ids.astype(np.int32),
            "topk_probs": arrays.topk_probs.astype(np.float32),
        },
    )


def make_set(rng: np.random.Generator, index: int, kind: str, n_layers: int) -> SimSet:
    """One set of ``kind`` (``SimSet``): 8-12 images of one or two prompts each, 3-6 tokens a sample."""
    planted = boundaries(rng, n_layers, int(rng.integers(1, 4 if n_layers >= 14 else 3)))
    if kind in ("steady", "smooth", "drift"):
        planted = ()
    levels = regimes(rng, len(planted) + 1)
    if kind == "drift":
        levels = [(levels[0][0], 0.02)]
    ar, drift = (0.8 if kind == "smooth" else 0.0), (rng.uniform(0.2, 0.4) if kind == "drift" else 0.0)
    jsd_noise = float(rng.uniform(0.03, 0.1))
    sim = SimSet(f"set-{index:04d}", kind, n_layers, planted)
    two_prompts = index % 4 == 0  # a quarter of the sets: every image asked two prompts
    n_samples = int(rng.integers(8, 13)) * (2 if two_prompts else 1)
    for sample in range(n_samples):
        sample_id = f"{sim.name}-s{sample:02d}"
        image = f"{sim.name}-img{sample // 2 if two_prompts else sample}"
        n_steps = int(rng.integers(3, 7))
        jsd, prob = token_curves(rng, n_layers, planted, levels, n_steps, jsd_noise, ar, drift)
        sim.records.append(sample_record(sample_id, image, jsd, prob))
        if kind in ("planted+null", "shared"):
            null_levels = levels if kind == "shared" else [levels[0]]
            null_starts = planted if kind == "shared" else ()
            jsd, prob = token_curves(rng, n_layers, null_starts, null_levels, n_steps, jsd_noise)
            sim.null_records.append(sample_record(sample_id, image, jsd, prob))
    return sim


META = {"model": "synthetic", "revision": None, "dtype": "float32", "lens": "normed", "top_k": 3, "seed": 0}


def write_sets(directory: Path, sets: list[SimSet], null: bool = False) -> Trace:
    """Write ``sets`` (one depth) as one trace through the store and read it back."""
    meta = {**META, "n_layers": sets[0].n_layers, "decoding": {"max_new_tokens": 8}, "paper_js": False}
    if null:
        meta |= {"mode": "score", "condition": "no-image"}
    TraceWriter.open(directory, meta).close()
    records = [r for s in sets for r in (s.null_records if null else s.records)]
    write_part(directory, "part-00000.parquet", records)
    return load_trace(directory)


def split_sets(trace: Trace) -> dict[str, Trace]:
    """Every set of ``trace`` (sample ids "set-NNNN-sMM") as a trace of its own, its metric matrices cut
    from the whole trace's (stacked once)."""
    matrices = {name: trace.matrix(name) for name in ("jsd_next", "prob", "rank", "entropy")}
    names = trace.steps["sample_id"].str.slice(0, 8).to_numpy()
    sample_names = trace.samples["sample_id"].str.slice(0, 8).to_numpy()
    sets = {}
    for name in dict.fromkeys(names):
        rows = np.flatnonzero(names == name)
        steps = trace.steps.iloc[rows].reset_index(drop=True)
        samples = trace.samples[sample_names == name].reset_index(drop=True)
        part = Trace(trace.directory, trace.meta, samples, steps)
        part._matrices.update({key: values[rows] for key, values in matrices.items()})
        sets[str(name)] = part
    return sets
