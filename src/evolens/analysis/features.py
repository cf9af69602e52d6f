"""Feature level: 2-D maps (t-SNE, PCA) of stored per-layer hidden states, and how well they separate.

(a) one sample: every generated token at layers 1..L; (b) many samples with the same question, at the
step that emits the answer word: one state per sample per layer. For (b), per layer:

- ``dispersion``: mean pairwise Euclidean distance between the samples' states divided by their mean
  norm (0 when every image gives the same state; scale-free across layers);
- ``silhouette_by_image``: silhouette score (Euclidean) of the states of layers l-1, l, l+1 labelled by
  sample: > 0 when each image's states sit closer to each other than to other images' states;
- ``silhouette_by_answer``: silhouette score of layer l's states labelled by the emitted answer word
  (when at least two answers occur and some answer occurs twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import pairwise_distances, silhouette_score
from threadpoolctl import threadpool_limits

from evolens.analysis.tokens import token_kinds
from evolens.errors import UsageError
from evolens.io.trace import HiddenStates, Trace

Method = Literal["tsne", "pca"]


@dataclass(frozen=True)
class FeaturePoints:
    """Hidden states to map and what each one is.

    Attributes:
        states: (n_points, d) float32.
        rows: one row per point: sample_id, step, token, layer.
    """

    states: np.ndarray
    rows: pd.DataFrame


def single_sample_points(
    trace: Trace, sample_id: str, layers: Iterable[int] | None = None, max_steps: int | None = None
) -> FeaturePoints:
    """States of the stored steps (the first ``max_steps`` when given) of one sample at ``layers``
    (default 1..L)."""
    hidden = trace.hidden(sample_id)
    if hidden is None:
        raise UsageError(f"sample '{sample_id}' has no stored hidden states (trace with --keep-hidden)")
    if max_steps is not None:
        hidden = HiddenStates(hidden.states[:max_steps], hidden.steps[:max_steps], hidden.layers)
    wanted = list(range(1, trace.n_layers + 1) if layers is None else layers)
    columns = [int(np.flatnonzero(hidden.layers == layer)[0]) for layer in wanted if layer in hidden.layers]
    kept_layers = hidden.layers[columns]
    tokens = dict(
        zip(
            trace.steps["step"].to_numpy()[trace.rows_of(sample_id)],
            trace.steps["token"].to_numpy()[trace.rows_of(sample_id)],
            strict=True,
        )
    )
    states = hidden.states[:, columns, :]
    rows = pd.DataFrame(
        {
            "sample_id": sample_id,
            "step": np.repeat(hidden.steps, len(columns)),
            "token": np.repeat([tokens.get(int(s), "") for s in hidden.steps], len(columns)),
            "layer": np.tile(kept_layers, len(hidden.steps)),
        }
    )
    return FeaturePoints(states.reshape(-1, states.shape[-1]), rows)


Answer = Literal["auto"] | int | Iterable[str]
"""Which step emits the answer: "auto" (the first content word), a step index, or answer words."""


def answer_step(trace: Trace, sample_id: str, answer: Answer) -> int | None:
    """The step that emits the answer (None when the sample has no such step).

    ``answer`` is "auto" (the first content word, e.g. "red" in "The shape is red."; step 0 if none),
    a step index, or a set of words (e.g. colours): the first step whose token, stripped and
    lower-cased, is one of them.
    """
    rows = trace.rows_of(sample_id)
    if isinstance(answer, int):
        return answer if answer < len(rows) else None
    if answer == "auto":
        kinds = token_kinds(list(trace.steps["token"].iloc[rows]), trace.prompt_of(sample_id))
        return kinds.index("content") if "content" in kinds else 0
    words = {w.strip().lower() for w in answer}
    for row in rows:
        if str(trace.steps["token"].iat[row]).strip().lower() in words:
            return int(trace.steps["step"].iat[row])
    return None


def answer_points(
    trace: Trace, sample_ids: list[str], answer: Answer, layers: Iterable[int] | None = None
) -> FeaturePoints:
    """States at the answer step of each sample that has stored states and an answer step, layers 1..L.

    ``rows`` also holds ``answer`` (the emitted answer token, stripped).
    """
    answer = answer if isinstance(answer, int) or answer == "auto" else list(answer)
    wanted = list(range(1, trace.n_layers + 1) if layers is None else layers)
    states, frames = [], []
    for sample_id in sample_ids:
        hidden, step = trace.hidden(sample_id), answer_step(trace, sample_id, answer)
        if hidden is None or step is None or step not in hidden.steps:
            continue
        if not all(layer in hidden.layers for layer in wanted):
            continue
        row = trace.rows_of(sample_id)[step]
        token = str(trace.steps["token"].iat[row])
        states.append(np.stack([hidden.at(step, layer) for layer in wanted]))
        frames.append(
            pd.DataFrame(
                {
                    "sample_id": sample_id,
                    "step": step,
                    "token": token,
                    "layer": wanted,
                    "answer": token.strip().lower(),
                }
            )
        )
    if len(states) < 2:
        raise UsageError(f"need stored states at the answer step for at least 2 samples, found {len(states)}")
    return FeaturePoints(np.concatenate(states), pd.concat(frames, ignore_index=True))


@dataclass(frozen=True)
class Projection:
    """A 2-D map of states.

    Attributes:
        xy: (n_points, 2) coordinates.
        explained: for PCA, the share of the states' variance along each of the two axes; None for t-SNE.
    """

    xy: np.ndarray
    explained: tuple[float, float] | None = None


def project_2d(states: np.ndarray, method: Method = "tsne", seed: int = 0) -> Projection:
    """The 2-D map of ``states`` (n_points, d); deterministic for a given seed.

    t-SNE uses perplexity min(30, (n-1)/3), PCA initialisation and one thread; PCA uses the full SVD.
    """
    states = np.asarray(states, dtype=np.float64)
    if method == "pca":
        pca = PCA(n_components=2, svd_solver="full")
        xy = pca.fit_transform(states)
        first, second = (float(v) for v in pca.explained_variance_ratio_)
        return Projection(xy, (first, second))
    if method != "tsne":
        raise UsageError(f"unknown projection '{method}'; use tsne or pca")
    perplexity = max(1.0, min(30.0, (len(states) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=1):  # one thread: same result on every machine, no oversubscription
        return Projection(tsne.fit_transform(states))


def embed_2d(states: np.ndarray, method: Method = "tsne", seed: int = 0) -> np.ndarray:
    """(n_points, 2) coordinates of ``states`` (n_points, d): ``project_2d(...).xy``."""
    return project_2d(states, method, seed).xy


def separation_by_layer(points: FeaturePoints) -> pd.DataFrame:
    """Per layer, how far apart the samples' answer-step states are (see the module docstring).

    Columns: layer, dispersion, silhouette_by_image, silhouette_by_answer (NaN where undefined).
    """
    layers = sorted(points.rows["layer"].unique())
    by_layer = {layer: np.flatnonzero(points.rows["layer"].to_numpy() == layer) for layer in layers}
    records = []
    for index, layer in enumerate(layers):
        rows = by_layer[layer]
        states = points.states[rows].astype(np.float64)
        distances = pairwise_distances(states)
        pairs = distances[np.triu_indices(len(rows), 1)]
        scale = np.linalg.norm(states, axis=1).mean()
        window = np.concatenate(
            [by_layer[layers[j]] for j in range(max(0, index - 1), min(len(layers), index + 2))]
        )
        records.append(
            {
                "layer": int(layer),
                "dispersion": float(pairs.mean() / scale) if scale > 0 else 0.0,
                "silhouette_by_image": _silhouette(
                    points.states[window], points.rows["sample_id"].to_numpy()[window]
                ),
                "silhouette_by_answer": _silhouette(states, points.rows["answer"].to_numpy()[rows]),
            }
        )
    return pd.DataFrame(records)


def _silhouette(states: np.ndarray, labels: np.ndarray) -> float:
    """The silhouette score, NaN when it is undefined (one label, or every point its own label)."""
    n_labels = len(set(labels))
    if not 2 <= n_labels <= len(labels) - 1:
        return float("nan")
    if np.allclose(states, states[0]):
        return 0.0
    return float(silhouette_score(np.asarray(states, dtype=np.float64), labels))
