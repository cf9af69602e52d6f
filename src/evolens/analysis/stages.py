"""Stage detection: the critical layer, the mutation layer(s), and the three stages of the study.

Layers are lens layers 0..L (0 = input embeddings, l = output of the l-th decoder layer). The change
made by layer l is Δ_l = JSD(p_{l-1}, p_l) = ``jsd_next[l - 1]``, for l = 1..L.

- **Critical layer (JSD criterion)** c: the first layer from which the distribution stays put, i.e.
  the first c such that the next ``min_stable_layers`` changes Δ_{c+1} .. Δ_{c+w} are all below
  ``jsd_threshold`` x scale (scale = the curve's own max Δ, or ln 2). Layer c made the last big change.
- **Critical layer (probability criterion)**: the first layer where the emitted token's probability
  reaches ``prob_rise_fraction`` of its maximum over layers.
- **Mutation layers**: late layers m (after the stable run, m > c + w, and m >= ``mutation_min_depth``
  x L) where the distribution jumps again:
  Δ_m >= ``mutation_jsd_threshold`` x scale, or the emitted token's probability changes by at least
  ``mutation_prob_jump`` x its max, or its rank changes by ``mutation_rank_jump_bits`` in log2(1 + rank).
- **Stages**: rapid evolution [0, c-1], stabilization [c, m-1], mutation [m, L]; contiguous and
  covering 0..L (a stage that does not occur is left out).

docs/analysis.md gives the reasons for each default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Literal

import numpy as np

from evolens.errors import UsageError
from evolens.vocabulary import format_layers as format_layers  # re-exported for evolens.interventions
from evolens.vocabulary import layer_span

if TYPE_CHECKING:
    from evolens.io.trace import Trace

LN2 = math.log(2.0)


@dataclass(frozen=True)
class StageConfig:
    """Parameters of the stage detector (all thresholds are relative, so they work on any model).

    Attributes:
        jsd_threshold: a layer change Δ counts as small when Δ < jsd_threshold x scale.
        jsd_scale: "max" (the curve's own largest Δ) or "ln2" (the JSD's upper bound).
        min_stable_fraction: the stable run must last max(2, round(min_stable_fraction x L)) layers.
        prob_rise_fraction: the probability criterion's level, as a fraction of the curve's max.
        mutation_jsd_threshold: Δ >= this x scale after the stable run is a mutation; None = jsd_threshold.
        mutation_prob_jump: |p_m - p_{m-1}| >= this x max(p) after the stable run is a mutation.
        mutation_rank_jump_bits: |log2(1+rank_m) - log2(1+rank_{m-1})| >= this is a mutation (3 = 8x).
        mutation_min_depth: mutations are searched only at layers >= this x L (the "late" layers).
        agreement_tolerance: the two critical layers agree when they differ by at most this many layers.
    """

    jsd_threshold: float = 0.2
    jsd_scale: Literal["max", "ln2"] = "max"
    min_stable_fraction: float = 0.1
    prob_rise_fraction: float = 0.5
    mutation_jsd_threshold: float | None = None
    mutation_prob_jump: float = 0.3
    mutation_rank_jump_bits: float = 3.0
    mutation_min_depth: float = 0.5
    agreement_tolerance: int = 2

    def __post_init__(self) -> None:
        for name in (
            "jsd_threshold",
            "min_stable_fraction",
            "prob_rise_fraction",
            "mutation_prob_jump",
            "mutation_min_depth",
        ):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise UsageError(f"stage detector: {name} must be in (0, 1], got {value}")
        if self.mutation_jsd_threshold is not None and not 0 < self.mutation_jsd_threshold <= 1:
            raise UsageError(
                f"stage detector: mutation_jsd_threshold must be in (0, 1], got {self.mutation_jsd_threshold}"
            )
        if self.jsd_scale not in ("max", "ln2"):
            raise UsageError(f"stage detector: jsd_scale must be 'max' or 'ln2', got '{self.jsd_scale}'")
        if self.mutation_rank_jump_bits <= 0 or self.agreement_tolerance < 0:
            raise UsageError(
                "stage detector: mutation_rank_jump_bits must be > 0 and agreement_tolerance >= 0"
            )

    def min_stable_layers(self, n_layers: int) -> int:
        """w: how many consecutive small changes make a stable run."""
        return max(2, round(self.min_stable_fraction * n_layers))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> StageConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UsageError(f"stage detector: unknown parameter(s) {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass(frozen=True)
class Stage:
    """A contiguous range of lens layers, both ends included."""

    name: str
    start: int
    end: int

    @property
    def span(self) -> str:
        """ "layers 12-26", or "layer 30" for a one-layer stage."""
        return layer_span(self.start, self.end)

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class StageResult:
    """What the detector found on one set of curves.

    Attributes:
        n_layers: L; layers are 0..L.
        critical_layer: the JSD criterion's critical layer (the stages use it); None if the
            distribution never settles for ``min_stable_layers``.
        critical_layer_prob: the probability criterion's critical layer; None if p is 0 everywhere.
        mutation_layers: every layer after the stable run where a jump was found, ascending.
        mutation_causes: for each mutation layer, which criteria fired ("jsd", "prob", "rank").
        stages: contiguous stages covering 0..L.
        config: the parameters used.
    """

    n_layers: int
    critical_layer: int | None
    critical_layer_prob: int | None
    mutation_layers: tuple[int, ...]
    stages: tuple[Stage, ...]
    config: StageConfig
    mutation_causes: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def mutation_layer(self) -> int | None:
        """The first mutation layer, where the mutation stage starts; None when there is none."""
        return self.mutation_layers[0] if self.mutation_layers else None

    @property
    def critical_difference(self) -> int | None:
        """critical_layer_prob - critical_layer, None when either is missing."""
        if self.critical_layer is None or self.critical_layer_prob is None:
            return None
        return self.critical_layer_prob - self.critical_layer

    @property
    def critical_agree(self) -> bool | None:
        difference = self.critical_difference
        return None if difference is None else abs(difference) <= self.config.agreement_tolerance

    def stage_of(self, layer: int) -> str:
        """The name of the stage that holds ``layer``."""
        for stage in self.stages:
            if stage.start <= layer <= stage.end:
                return stage.name
        raise ValueError(f"layer {layer} outside 0..{self.n_layers}")

    def to_dict(self) -> dict:
        return {
            "n_layers": self.n_layers,
            "critical_layer": self.critical_layer,
            "critical_layer_prob": self.critical_layer_prob,
            "critical_agreement": {
                "difference": self.critical_difference,
                "agree": self.critical_agree,
                "tolerance": self.config.agreement_tolerance,
            },
            "mutation_layer": self.mutation_layer,
            "mutation_layers": list(self.mutation_layers),
            "mutation_causes": {str(k): list(v) for k, v in self.mutation_causes.items()},
            "stages": [stage.to_dict() for stage in self.stages],
        }


def build_stages(n_layers: int, critical: int | None, mutation: int | None) -> tuple[Stage, ...]:
    """Contiguous stages covering 0..L from the critical and first mutation layers."""
    if critical is None:
        return (Stage("rapid_evolution", 0, n_layers),)
    stages = []
    if critical > 0:
        stages.append(Stage("rapid_evolution", 0, critical - 1))
    stable_end = n_layers if mutation is None else mutation - 1
    stages.append(Stage("stabilization", critical, stable_end))
    if mutation is not None:
        stages.append(Stage("mutation", mutation, n_layers))
    return tuple(stages)


def critical_by_jsd(jsd_next: np.ndarray, config: StageConfig) -> int | None:
    """The first layer c with Δ_{c+1..c+w} all below the threshold (``jsd_next[c:c+w]``)."""
    n_layers = len(jsd_next)
    width = config.min_stable_layers(n_layers)
    small = jsd_next < config.jsd_threshold * _scale(jsd_next, config)
    for start in range(n_layers - width + 1):
        if small[start : start + width].all():
            return start
    return None


def critical_by_prob(prob: np.ndarray, config: StageConfig) -> int | None:
    """The first layer where p reaches ``prob_rise_fraction`` x max(p)."""
    top = float(np.max(prob))
    if top <= 0:
        return None
    return int(np.argmax(prob >= config.prob_rise_fraction * top))


def _scale(jsd_next: np.ndarray, config: StageConfig) -> float:
    if config.jsd_scale == "ln2":
        return LN2
    top = float(np.max(jsd_next))
    return top if top > 0 else LN2


def detect_curves(
    jsd_next: np.ndarray,
    prob: np.ndarray,
    log_rank: np.ndarray | None = None,
    config: StageConfig | None = None,
) -> StageResult:
    """Run the detector on one set of curves (one token's, or a mean over tokens).

    Args:
        jsd_next: (L,) JSD(p_l, p_{l+1}) for l = 0..L-1.
        prob: (L+1,) the emitted token's probability at each lens layer.
        log_rank: (L+1,) log2(1 + rank of the emitted token), or None to skip the rank criterion.
    """
    config = config or StageConfig()
    jsd_next, prob = np.asarray(jsd_next, dtype=np.float64), np.asarray(prob, dtype=np.float64)
    n_layers = len(jsd_next)
    if prob.shape != (n_layers + 1,):
        raise ValueError(f"prob has shape {prob.shape}, expected ({n_layers + 1},)")
    critical = critical_by_jsd(jsd_next, config)
    causes: dict[int, tuple[str, ...]] = {}
    if critical is not None:
        mutation_tau = (config.mutation_jsd_threshold or config.jsd_threshold) * _scale(jsd_next, config)
        prob_tau = config.mutation_prob_jump * max(float(prob.max()), 1e-12)
        first = max(
            critical + config.min_stable_layers(n_layers), math.ceil(config.mutation_min_depth * n_layers) - 1
        )
        for transition in range(first, n_layers):
            fired = []
            if jsd_next[transition] >= mutation_tau:
                fired.append("jsd")
            if abs(prob[transition + 1] - prob[transition]) >= prob_tau:
                fired.append("prob")
            if (
                log_rank is not None
                and abs(log_rank[transition + 1] - log_rank[transition]) >= config.mutation_rank_jump_bits
            ):
                fired.append("rank")
            if fired:
                causes[transition + 1] = tuple(fired)
    mutations = tuple(sorted(causes))
    return StageResult(
        n_layers=n_layers,
        critical_layer=critical,
        critical_layer_prob=critical_by_prob(prob, config),
        mutation_layers=mutations,
        stages=build_stages(n_layers, critical, mutations[0] if mutations else None),
        config=config,
        mutation_causes=causes,
    )


def log_rank(rank: np.ndarray) -> np.ndarray:
    """log2(1 + rank): 0 for top-1, 1 for second, ~15.6 for rank 49,151."""
    return np.log2(1.0 + np.asarray(rank, dtype=np.float64))


def mean_curves(trace: Trace, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-weighted mean curves of a trace (or of ``rows`` of it).

    Returns:
        jsd_next (L,), prob (L+1,), and log_rank (L+1,) = mean of log2(1 + rank).
    """
    select = slice(None) if rows is None else rows
    return (
        trace.matrix("jsd_next")[select].mean(0),
        trace.matrix("prob")[select].mean(0),
        log_rank(trace.matrix("rank")[select]).mean(0),
    )


def detect_stages(trace: Trace, config: StageConfig | None = None) -> StageResult:
    """The stages of a whole trace: the detector run on its mean curves over every generated token.

    This is the function other steps call (e.g. layer skipping builds its plans from
    ``result.stages``, ``result.critical_layer`` and ``result.mutation_layers``).
    """
    return detect_curves(*mean_curves(trace), config=config)
