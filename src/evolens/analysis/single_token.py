"""Single-token level: the numbers behind the heatmap, the per-token probability chart and the lens grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from evolens.analysis.token_strings import TokenStrings
from evolens.errors import UsageError
from evolens.io.trace import Trace
from evolens.vocabulary import HEATMAP, METRICS

Normalization = Literal["none", "per-layer"]
HeatmapMetric = Literal["jsd_next", "paper_js"]


@dataclass(frozen=True)
class HeatmapData:
    """Consecutive-layer divergence of one sample's generated tokens.

    Attributes:
        values: (n_steps, L); column j is the change made by layer j+1, i.e. D(p_j, p_{j+1}).
        raw: (n_steps, L) the same before normalisation.
        tokens: n_steps emitted token strings (row labels); steps: (n_steps,) their step indexes.
        layers: (L,) = 1..L, the column labels.
        colorbar: what the colour means, with units.
        vmax: top of the colour scale (shared by all pages of the sample).
    """

    sample_id: str
    metric: str
    normalization: str
    values: np.ndarray
    raw: np.ndarray
    tokens: list[str]
    steps: np.ndarray
    layers: np.ndarray
    colorbar: str
    vmax: float

    def pages(self, rows_per_page: int) -> list[HeatmapData]:
        """The rows split into consecutive pages of at most ``rows_per_page`` tokens."""
        n = len(self.tokens)
        pages = []
        for start in range(0, n, rows_per_page):
            part = slice(start, min(n, start + rows_per_page))
            pages.append(
                HeatmapData(
                    sample_id=self.sample_id,
                    metric=self.metric,
                    normalization=self.normalization,
                    values=self.values[part],
                    raw=self.raw[part],
                    tokens=self.tokens[part],
                    steps=self.steps[part],
                    layers=self.layers,
                    colorbar=self.colorbar,
                    vmax=self.vmax,
                )
            )
        return pages


def heatmap_data(
    trace: Trace,
    sample_id: str,
    metric: HeatmapMetric = "jsd_next",
    normalization: Normalization = "none",
    steps: tuple[int, int] | None = None,
) -> HeatmapData:
    """The heatmap of one sample, steps ``steps = (first, last)`` inclusive (all when None).

    ``normalization="per-layer"`` divides each column by its maximum over the sample's tokens (the
    paper's look; colours are then not comparable across layers). ``metric="paper_js"`` is the paper's
    figure exactly: its "JS" on the raw lens, always scaled per layer.
    """
    if metric not in HEATMAP:
        raise UsageError(f"unknown heatmap metric '{metric}'; use {' or '.join(HEATMAP)}")
    if normalization not in ("none", "per-layer"):
        raise UsageError(f"unknown normalization '{normalization}'; use none or per-layer")
    rows = trace.rows_of(sample_id)
    raw = trace.matrix(metric)[rows]
    if metric == "paper_js":
        normalization = "per-layer"
    if normalization == "per-layer":
        column_max = raw.max(0)
        values = np.divide(raw, column_max, out=np.zeros_like(raw), where=column_max > 0)
        colorbar = f"{METRICS[metric].short} / its max over tokens at that layer"
        vmax = 1.0
    else:
        values = raw
        colorbar = f"{METRICS[metric].label}, at most ln 2 = 0.693"
        vmax = float(raw.max()) if raw.max() > 0 else np.log(2.0)
    step_numbers = trace.steps["step"].to_numpy()[rows]
    keep = np.ones(len(rows), dtype=bool)
    if steps is not None:
        keep = (step_numbers >= steps[0]) & (step_numbers <= steps[1])
        if not keep.any():
            raise UsageError(
                f"sample '{sample_id}' has no steps in {steps[0]}-{steps[1]} (it has {len(rows)})"
            )
    return HeatmapData(
        sample_id=sample_id,
        metric=metric,
        normalization=normalization,
        values=values[keep],
        raw=raw[keep],
        tokens=list(trace.steps["token"].to_numpy()[rows][keep]),
        steps=step_numbers[keep],
        layers=np.arange(1, trace.n_layers + 1),
        colorbar=colorbar,
        vmax=vmax,
    )


def find_step(trace: Trace, sample_id: str, token: str | int) -> int:
    """The row (into ``trace.steps``) of a generated token chosen by step index or by its text.

    Text matches the first step whose token, stripped and lower-cased, equals it.
    """
    rows = trace.rows_of(sample_id)
    if isinstance(token, int) or str(token).lstrip("-").isdigit():
        index = int(token)
        if not -len(rows) <= index < len(rows):
            raise UsageError(f"sample '{sample_id}' has {len(rows)} generated tokens; no step {index}")
        return int(rows[index])
    wanted = str(token).strip().lower()
    for row in rows:
        if str(trace.steps["token"].iat[row]).strip().lower() == wanted:
            return int(row)
    raise UsageError(f"sample '{sample_id}' never emits the token '{token}'")


@dataclass(frozen=True)
class CandidateCurves:
    """Probabilities across layers of the emitted token and of the candidates late layers favour.

    Attributes:
        layers: (L+1,) 0..L.
        token_ids: the series' token ids, the emitted token first.
        labels: their strings.
        probs: (n_series, L+1); a candidate's value is known only where it was in that layer's top-k
            (``known``) and is 0 elsewhere (it was then below the k-th probability).
        known: (n_series, L+1) bool.
        emitted: the emitted token's id; step: its step; sample_id.
    """

    sample_id: str
    step: int
    emitted: int
    layers: np.ndarray
    token_ids: list[int]
    labels: list[str]
    probs: np.ndarray
    known: np.ndarray


def candidate_curves(
    trace: Trace,
    row: int,
    late_from: int | None = None,
    max_candidates: int = 4,
    strings: TokenStrings | None = None,
) -> CandidateCurves:
    """The series of the paper's area chart for one generated token (``row`` of ``trace.steps``).

    Candidates are the top-1 and top-2 tokens of layers ``late_from``..L (default: the last third),
    ranked by their highest probability there; the emitted token is always included.
    """
    n_layers = trace.n_layers
    late_from = (2 * n_layers) // 3 if late_from is None else late_from
    ids, probs = trace.topk()
    ids, probs = ids[row], probs[row]
    emitted = int(trace.steps["token_id"].iat[row])
    best: dict[int, float] = {}
    for layer in range(late_from, n_layers + 1):
        for slot in range(min(2, ids.shape[1])):
            token = int(ids[layer, slot])
            best[token] = max(best.get(token, 0.0), float(probs[layer, slot]))
    best.pop(emitted, None)
    candidates = [emitted, *sorted(best, key=lambda t: (-best[t], t))[: max_candidates - 1]]
    series = np.zeros((len(candidates), n_layers + 1))
    known = np.zeros_like(series, dtype=bool)
    for i, token in enumerate(candidates):
        match = ids == token
        known[i] = match.any(1)
        series[i] = np.where(match, probs, 0.0).sum(1)
    series[0], known[0] = trace.matrix("prob")[row], True
    strings = strings or TokenStrings(trace)
    return CandidateCurves(
        sample_id=str(trace.steps["sample_id"].iat[row]),
        step=int(trace.steps["step"].iat[row]),
        emitted=emitted,
        layers=np.arange(n_layers + 1),
        token_ids=candidates,
        labels=[strings(t) for t in candidates],
        probs=series,
        known=known,
    )


@dataclass(frozen=True)
class LensGrid:
    """Top-1 token of every lens layer at every step of one sample.

    Attributes:
        top_ids: (L+1, n_steps) top-1 token ids; top_probs: (L+1, n_steps) their probabilities.
        labels: (L+1, n_steps) their strings. emitted: n_steps emitted token strings; steps: (n_steps,).
    """

    sample_id: str
    top_ids: np.ndarray
    top_probs: np.ndarray
    labels: np.ndarray
    emitted: list[str]
    steps: np.ndarray

    def pages(self, steps_per_page: int) -> list[LensGrid]:
        """The columns split into consecutive pages of at most ``steps_per_page`` steps."""
        pages = []
        for start in range(0, len(self.emitted), steps_per_page):
            part = slice(start, start + steps_per_page)
            pages.append(
                LensGrid(
                    sample_id=self.sample_id,
                    top_ids=self.top_ids[:, part],
                    top_probs=self.top_probs[:, part],
                    labels=self.labels[:, part],
                    emitted=self.emitted[part],
                    steps=self.steps[part],
                )
            )
        return pages


def lens_grid(
    trace: Trace, sample_id: str, steps: tuple[int, int] | None = None, strings: TokenStrings | None = None
) -> LensGrid:
    """The logit-lens grid of one sample (all steps, or ``steps = (first, last)`` inclusive)."""
    rows = trace.rows_of(sample_id)
    step_numbers = trace.steps["step"].to_numpy()[rows]
    if steps is not None:
        rows = rows[(step_numbers >= steps[0]) & (step_numbers <= steps[1])]
        step_numbers = trace.steps["step"].to_numpy()[rows]
    ids, probs = trace.topk()
    top_ids, top_probs = ids[rows, :, 0].T, probs[rows, :, 0].T
    strings = strings or TokenStrings(trace)
    return LensGrid(
        sample_id=sample_id,
        top_ids=top_ids,
        top_probs=top_probs,
        labels=strings.many(top_ids),
        emitted=list(trace.steps["token"].to_numpy()[rows]),
        steps=step_numbers,
    )
