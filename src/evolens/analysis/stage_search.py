"""Stages found, not assumed: change points of the layer curves that beat the nulls.

For one scope of tokens (all, content words, function words): the per-sample curves of ``stage_signal``
(how much each lens layer 2..L changes the readout: Δ, |Δ ln p|, |Δ log-rank|, |Δ entropy|) are averaged
(token-weighted) and standardized; PELT (``ruptures``, ``l2`` cost, segments of at least ``min_size``
layers) segments the curve under the penalty β that the layer-permutation and sampling-noise nulls set
(``stage_nulls``), so the number of stages is chosen, and a curve without layer structure gets a boundary with
probability <= 1 - level. When null traces are given (the same tokens scored without the image, with a blank
or another image), every PELT boundary is also tested, once and all together, against each null trace
(``stage_null_traces``): one that does not beat them all is removed (``rejected``, with the reason). Each kept
boundary's ``change`` is its saving as tested, on PELT's segmentation. The segments are then named by position
(``stage_names``). No boundary, or no mutation stage, is a result like any other.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from evolens.analysis.segmentation import boundary_gains, max_boundaries, pelt
from evolens.analysis.stage_names import Naming, name_segments
from evolens.analysis.stage_null_traces import compare_with_nulls, draw_nulls, excess_quantile
from evolens.analysis.stage_nulls import Penalty, choose_penalty
from evolens.analysis.stage_signal import FEATURES, LayerSignal, Standardizer, layer_signal, standardizer
from evolens.analysis.stage_signal import token_features as token_features
from evolens.analysis.tokens import kinds_for_trace
from evolens.errors import UsageError
from evolens.io.trace import Trace

SCOPES = ("all", "content", "function")


@dataclass(frozen=True)
class StageSearchConfig:
    """Parameters of the stage search.

    Attributes:
        min_size: the shortest segment, in layers.
        n_perm: replicates of each within-trace null (the penalty's quantile).
        n_null_perm: randomized replicates of the test against null traces.
        level: 1 - the family-wise error of each null (0.95: a 5% chance of any false boundary).
        match_layers: a bootstrap replicate's boundary within this many layers is the same boundary.
        mutation_min_depth: a mutation stage starts at a layer >= this x L.
        scopes: token scopes searched ("all" and token kinds).
        seed: the nulls' and the bootstrap's random draws.
    """

    min_size: int = 2
    n_perm: int = 500
    n_null_perm: int = 500
    level: float = 0.95
    match_layers: int = 2
    mutation_min_depth: float = 0.5
    scopes: tuple[str, ...] = SCOPES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_size < 1 or self.match_layers < 0:
            raise UsageError("stage search: min_size must be >= 1 and match_layers >= 0")
        if not 0.5 <= self.level < 1 or not 0 < self.mutation_min_depth <= 1:
            raise UsageError("stage search: level must be in [0.5, 1) and mutation_min_depth in (0, 1]")
        if self.n_perm < 19 or self.n_null_perm < 19:
            raise UsageError("stage search: n_perm and n_null_perm must be >= 19")

    def to_dict(self) -> dict:
        return {**asdict(self), "scopes": list(self.scopes)}


@dataclass(frozen=True)
class FoundBoundary:
    """A boundary that beat every null: the segment after it starts at lens layer ``layer``.

    Attributes:
        position: its index on the curve (layer = position + 1).
        change: the cost it saves (standardized units; its segments merged would cost this much more).
        steps: feature -> mean after - mean before, over its two segments, in the feature's own units.
        nulls: condition -> the test against that null trace (``NullTraceTest.record``).
    """

    position: int
    layer: int
    change: float
    steps: dict[str, float]
    nulls: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A PELT candidate removed because it did not beat a null: its layer, change and why."""

    layer: int
    change: float
    reason: str


@dataclass
class ScopeSearch:
    """The stage search on one scope of tokens.

    Attributes:
        scope: "all", "content" or "function".
        signal: the per-sample curves; standardize: the data's standardization; z: (n, d_used) its curve.
        penalty: β and how it was chosen.
        boundaries: those that beat every null, ascending.
        spans: the segments, (start, end) lens layers, covering 1..L.
        naming: the segments' names and whether the three-stage story fits.
        evidence: (n,) what a boundary at each position would save given the kept ones (NaN where none
            can be); position t is lens layer ``signal.layers[t]``.
        rejected: candidates that did not survive the nulls.
        null_critical: q of the null-trace test (None without null traces or boundaries); paired:
            condition -> whether the null holds the data's samples.
    """

    scope: str
    signal: LayerSignal
    standardize: Standardizer
    z: np.ndarray
    penalty: Penalty
    boundaries: tuple[FoundBoundary, ...]
    spans: tuple[tuple[int, int], ...]
    naming: Naming
    evidence: np.ndarray
    rejected: tuple[Rejected, ...]
    null_critical: float | None
    paired: dict[str, bool]
    config: StageSearchConfig

    @property
    def n_layers(self) -> int:
        return int(self.signal.layers[-1])

    def stage_start(self, name: str) -> int | None:
        """The first layer of the named stage, None when it was not found."""
        for span, stage in zip(self.spans, self.naming.names, strict=True):
            if stage == name:
                return span[0]
        return None


def spans_of(positions: tuple[int, ...], layers: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Segments (start, end) in lens layers from boundary positions on a curve over ``layers``."""
    edges = [0, *positions, len(layers)]
    return tuple((int(layers[a]), int(layers[b - 1])) for a, b in itertools.pairwise(edges))


def segment_change(z: np.ndarray, positions: tuple[int, ...]) -> list[float] | None:
    """Each segment's change: the mean of the standardized change features over its layers (None when no
    feature varies)."""
    if z.shape[-1] == 0:
        return None
    edges = [0, *positions, len(z)]
    return [float(z[a:b].mean()) for a, b in itertools.pairwise(edges)]


def search_scope(
    signal: LayerSignal, nulls: Mapping[str, LayerSignal], config: StageSearchConfig, scope: str = "all"
) -> ScopeSearch:
    """Find the stages of one scope's curves (module doc); ``nulls``: condition -> the null traces'
    curves of the same scope."""
    mean = signal.mean()
    standardize = standardizer(signal)
    z = standardize.apply(mean)
    min_size, level = config.min_size, config.level
    penalty = choose_penalty(signal, standardize, min_size, config.n_perm, level, config.seed)
    searchable = z.shape[1] > 0 and max_boundaries(len(z), min_size) > 0 and np.isfinite(penalty.value)
    candidates = pelt(z, penalty.value, min_size) if searchable else ()
    draws = draw_nulls(signal, nulls, standardize, config.n_null_perm, config.seed)
    critical = excess_quantile(draws, penalty.value, min_size, level) if searchable else 0.0
    test = compare_with_nulls(z, draws, candidates, min_size, critical) if draws and candidates else None
    tested = boundary_gains(z[None], candidates, min_size)[0]
    kept, rejected = [], []
    for k, position in enumerate(candidates):
        beaten = {c: bool(test.beats(c)[k]) for c in sorted(test.null)} if test is not None else {}
        if all(beaten.values()):
            kept.append(k)
            continue
        assert test is not None
        reasons = [
            f"did not beat the {c} null trace: change {test.real[k]:.4g}, threshold "
            f"{test.threshold[c][k]:.4g} (the null's own change there {test.null[c][k]:.4g})"
            for c, beats in beaten.items()
            if not beats
        ]
        rejected.append(Rejected(int(signal.layers[position]), float(tested[position]), "; ".join(reasons)))
    positions = tuple(candidates[k] for k in kept)
    gains = boundary_gains(z[None], positions, min_size)[0]
    boundaries = []
    edges = [0, *positions, len(z)]
    for index, (k, position) in enumerate(zip(kept, positions, strict=True)):
        before = mean[edges[index] : position].mean(0)
        after = mean[position : edges[index + 2]].mean(0)
        boundaries.append(
            FoundBoundary(
                position=position,
                layer=int(signal.layers[position]),
                change=float(tested[position]),
                steps={name: float(after[f] - before[f]) for f, name in enumerate(FEATURES)},
                nulls=test.record(k) if test is not None else {},
            )
        )
    spans = spans_of(positions, signal.layers)
    naming = name_segments(
        spans, segment_change(z, positions), int(signal.layers[-1]), config.mutation_min_depth
    )
    return ScopeSearch(
        scope=scope,
        signal=signal,
        standardize=standardize,
        z=z,
        penalty=penalty,
        boundaries=tuple(boundaries),
        spans=spans,
        naming=naming,
        evidence=gains,
        rejected=tuple(rejected),
        null_critical=critical if draws else None,
        paired={condition: draw.paired for condition, draw in draws.items()},
        config=config,
    )


@dataclass
class StageSearch:
    """The stage search of a trace: scope -> its result, or why it was not run."""

    scopes: dict[str, ScopeSearch]
    skipped: dict[str, str]
    config: StageSearchConfig
    nulls: tuple[str, ...]


def scope_rows(trace: Trace, scope: str) -> np.ndarray:
    """(n_tokens,) which tokens of ``trace`` are in ``scope`` ("all" or a token kind)."""
    if scope == "all":
        return np.ones(trace.n_tokens, dtype=bool)
    return kinds_for_trace(trace) == scope


def search_stages(
    trace: Trace, nulls: Mapping[str, Trace] | None = None, config: StageSearchConfig | None = None
) -> StageSearch:
    """The stage search on every scope of ``config`` (module doc); ``nulls``: condition -> the trace's
    tokens scored under it (any lens: a trace under another lens is searched the same way)."""
    config = config or StageSearchConfig()
    nulls = dict(nulls or {})
    features = token_features(trace)
    null_features = {c: token_features(t) for c, t in nulls.items()}
    found, skipped = {}, {}
    for scope in config.scopes:
        rows = scope_rows(trace, scope)
        if not rows.any():
            skipped[scope] = f"no {scope} tokens"
            continue
        if max_boundaries(trace.n_layers, config.min_size) == 0:
            skipped[scope] = f"{trace.n_layers} layers: too few for two segments of {config.min_size}"
            continue
        signal = layer_signal(trace, rows, features)
        null_signals = {
            c: layer_signal(t, scope_rows(t, scope), null_features[c])
            for c, t in nulls.items()
            if scope_rows(t, scope).any()
        }
        found[scope] = search_scope(signal, null_signals, config, scope)
    return StageSearch(found, skipped, config, tuple(sorted(nulls)))
