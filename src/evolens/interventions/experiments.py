"""The skipping experiment: generate under several layer plans and compare each with the full model.

Conditions (lens layers as in docs/trace-format.md; c = critical layer, m = first mutation layer):

- ``baseline``: every layer runs;
- ``stabilization``: the decoder layers producing lens layers c+1 .. m-1 (``LayerPlan.lens_span(c, m-1)``),
  whose changes the stage detector found small;
- ``mutation``: the layers producing lens layers m .. L (``lens_span(m-1, L)``);
- ``critical_to_L-5``: the layers producing lens layers c+1 .. L-5 (``lens_span(c, L-5)``);
- ``random-<name>-s<seed>``: for each of those, a uniformly random set of decoder layers of the same size.

Per sample: token agreement with the baseline (same token at the same position / the longer length) and
the normalised token edit distance (Levenshtein / the longer length); with shapes-world ground truth also
task accuracy and hallucinated description mentions. Per condition: wall time of ``generate`` and the
speed-up over the baseline, per sequence and per generated token.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import BatchFeature, LogitsProcessorList

from evolens.analysis.bootstrap import bootstrap_mean
from evolens.data.resolve import Sample, open_images
from evolens.data.shapes import Scene
from evolens.errors import InputError, UsageError
from evolens.eval.shapes import score_sample
from evolens.interventions.layer_mix import layer_mix
from evolens.interventions.plan import LayerPlan
from evolens.interventions.skipping import skip_layers, tokens_until_eos
from evolens.models.loaded import LoadedModel

if TYPE_CHECKING:
    from evolens.analysis.stages import StageResult


@dataclass(frozen=True)
class Condition:
    """One layer plan to generate with.

    Attributes:
        name: unique label ("baseline", "stabilization", "random-mutation-s1", ...).
        kind: "baseline", "stage", "custom", "random" or "layer_mix".
        plan: the decoder layers skipped.
        control_of: for a random control, the condition whose size it copies.
        seed: for a random control, the seed that drew it.
        mix: for layer-mix decoding, (lens layers, alpha, top_k) of ``LayerMixProcessor``.
    """

    name: str
    kind: str
    plan: LayerPlan
    control_of: str | None = None
    seed: int | None = None
    mix: tuple[tuple[int, ...], float, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "skipped": sorted(self.plan.skipped),
            "n_skipped": len(self.plan.skipped),
            "control_of": self.control_of,
            "seed": self.seed,
        }
        if self.mix is not None:
            record["layer_mix"] = {"layers": list(self.mix[0]), "alpha": self.mix[1], "top_k": self.mix[2]}
        return record


def random_plan(n_layers: int, size: int, seed: int) -> LayerPlan:
    """``size`` decoder layers drawn uniformly without replacement with ``random.Random(seed)``."""
    return LayerPlan.of(n_layers, random.Random(seed).sample(range(n_layers), size))


def with_random_controls(conditions: list[Condition], n_layers: int, seeds: Sequence[int]) -> list[Condition]:
    """The conditions followed by, for each non-baseline one, random controls of the same size."""
    controls = [
        Condition(
            f"random-{c.name}-s{seed}",
            "random",
            random_plan(n_layers, len(c.plan.skipped), seed),
            c.name,
            seed,
        )
        for c in conditions
        if c.kind != "baseline"
        for seed in seeds
    ]
    return conditions + controls


def stage_conditions(stages: StageResult, seeds: Sequence[int] = (0, 1, 2)) -> list[Condition]:
    """Baseline, the three stage-based plans the paper tests, and their random controls."""
    n, c, m = stages.n_layers, stages.critical_layer, stages.mutation_layer
    if c is None:
        raise InputError("stage detection found no critical layer in this trace; use --skip instead")
    conditions = [Condition("baseline", "baseline", LayerPlan.none(n))]
    stable_end = m - 1 if m is not None else n
    if stable_end > c:
        conditions.append(Condition("stabilization", "stage", LayerPlan.lens_span(n, c, stable_end)))
    if m is not None:
        conditions.append(Condition("mutation", "stage", LayerPlan.lens_span(n, m - 1, n)))
    if n - 5 > c:
        conditions.append(Condition("critical_to_L-5", "stage", LayerPlan.lens_span(n, c, n - 5)))
    if len(conditions) == 1:
        raise InputError(f"the stages (critical {c}, mutation {m}) leave no layers to skip")
    return with_random_controls(conditions, n, seeds)


def custom_conditions(plan: LayerPlan, seeds: Sequence[int] = (0, 1, 2)) -> list[Condition]:
    """Baseline, one user plan (``--skip``), and its random controls."""
    base = Condition("baseline", "baseline", LayerPlan.none(plan.n_layers))
    return with_random_controls(
        [base, Condition(plan.name or "custom", "custom", plan)], plan.n_layers, seeds
    )


@dataclass
class Generation:
    """A condition's outputs: token ids (EOS included when emitted) and texts per sample, and timing."""

    condition: Condition
    token_ids: list[list[int]]
    texts: list[str]
    wall_time_s: float

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)


@contextmanager
def _decoding(loaded: LoadedModel, condition: Condition) -> Iterator[dict[str, Any]]:
    """Extra ``generate`` arguments of a condition: a layer-mix logits processor, or nothing."""
    if condition.mix is None:
        yield {}
        return
    layers, alpha, top_k = condition.mix
    with layer_mix(loaded, layers, alpha, top_k) as processor:
        yield {"logits_processor": LogitsProcessorList([processor])}


def batch_inputs(loaded: LoadedModel, batch: Sequence[Sample]) -> BatchFeature:
    """The model inputs of one batch, images decoded (an unreadable image is an ``InputError``; callers
    set such samples aside first with ``evolens.data.resolve.open_images``)."""
    kept, images, failures = open_images(batch, loaded.adapter.vision)
    if failures:
        raise InputError(failures[0]["error"] or f"cannot read the image of {failures[0]['sample_id']}")
    return loaded.build_inputs([s.prompt for s in kept], images if loaded.adapter.vision else None)


def generate_batch(
    loaded: LoadedModel, inputs: BatchFeature, condition: Condition, max_new_tokens: int
) -> tuple[list[list[int]], float]:
    """Greedy generation of one batch's inputs under ``condition``: token ids per sample (EOS included
    when emitted) and the wall time of ``generate`` alone."""
    with skip_layers(loaded, condition.plan), _decoding(loaded, condition) as extra:
        began = time.perf_counter()
        new = loaded.generate(inputs, max_new_tokens=max_new_tokens, **extra)
        elapsed = time.perf_counter() - began
    return [tokens_until_eos(row, loaded.eos_token_ids) for row in new], elapsed


def token_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Fraction of positions holding the same token, over the longer sequence (1.0 for two empty ones)."""
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return sum(x == y for x, y in zip(a, b, strict=False)) / longest


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def normalised_edit_distance(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Edit distance / the longer length, in [0, 1] (0.0 for two empty sequences)."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


SampleScorer = Callable[[Sample, str], "tuple[float, int, int, bool]"]
"""(sample, text) -> (task accuracy or NaN, description mentions, hallucinated mentions, is a description)."""


def shapes_scorer(sample: Sample, text: str) -> tuple[float, int, int, bool]:
    """Scores a sample whose ground truth is a shapes-world scene; (NaN, 0, 0, False) for any other."""
    truth = sample.ground_truth
    if not truth or truth.get("source") != "shapes":
        return float("nan"), 0, 0, False
    scene = Scene.from_dict({k: v for k, v in truth.items() if k != "source"})
    score = score_sample(sample.prompt, text, scene)
    return score.correct, score.n_mentions, score.n_hallucinated, score.task == "describe"


@dataclass
class ConditionSummary:
    """Per-sample comparisons with the baseline and their aggregates for one condition."""

    generation: Generation
    agreement: np.ndarray
    edit: np.ndarray
    correct: np.ndarray
    mentions: np.ndarray
    hallucinated: np.ndarray
    described: np.ndarray
    speedup: float
    speedup_per_token: float
    aggregates: dict[str, Any] = field(default_factory=dict)


def _mean_ci(values: np.ndarray, weights: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Mean and 95% percentile bootstrap interval over samples (weighted: pooled ratio, sample clusters)."""
    keep = np.flatnonzero(np.isfinite(values) if weights is None else weights > 0)
    if len(keep) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    if weights is None:
        per_unit, clusters = values[keep, None], np.arange(len(keep))
    else:  # values are per-sample counts of hits out of ``weights`` units: one row per unit
        clusters = np.repeat(np.arange(len(keep)), weights[keep].astype(int))
        units = [np.arange(int(w)) < h for h, w in zip(values[keep], weights[keep], strict=True)]
        per_unit = np.concatenate(units).astype(np.float64)[:, None]
    result = bootstrap_mean(per_unit, clusters, len(keep), seed=seed)
    return {
        "mean": float(result.mean[0]),
        "low": float(result.low[0]),
        "high": float(result.high[0]),
        "n": len(keep),
    }


def summarise(
    baseline: Generation,
    generation: Generation,
    samples: Sequence[Sample],
    scorer: SampleScorer = shapes_scorer,
) -> ConditionSummary:
    """Compare one condition's generations with the baseline's, sample by sample."""
    scores = np.array(
        [scorer(s, t) for s, t in zip(samples, generation.texts, strict=True)], dtype=np.float64
    )
    pairs = list(zip(baseline.token_ids, generation.token_ids, strict=True))
    summary = ConditionSummary(
        generation=generation,
        agreement=np.array([token_agreement(a, b) for a, b in pairs]),
        edit=np.array([normalised_edit_distance(a, b) for a, b in pairs]),
        correct=scores[:, 0],
        mentions=scores[:, 1],
        hallucinated=scores[:, 2],
        described=scores[:, 3] > 0,
        speedup=baseline.wall_time_s / generation.wall_time_s if generation.wall_time_s else float("nan"),
        speedup_per_token=(baseline.wall_time_s / max(baseline.n_tokens, 1))
        / (generation.wall_time_s / max(generation.n_tokens, 1))
        if generation.wall_time_s
        else float("nan"),
    )
    summary.aggregates = {
        "token_agreement": _mean_ci(summary.agreement),
        "edit_distance": _mean_ci(summary.edit),
        "accuracy": _mean_ci(summary.correct),
        "chair_i": _mean_ci(summary.hallucinated, summary.mentions),
        "chair_s": _mean_ci(np.where(summary.described, summary.hallucinated > 0, np.nan)),
    }
    return summary


def run_experiment(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    conditions: Sequence[Condition],
    max_new_tokens: int = 48,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
) -> list[ConditionSummary]:
    """Generate under every condition (baseline first) and compare each with the baseline.

    Batches are the outer loop and conditions the inner one, so a change in machine load while the
    experiment runs affects every condition alike (the speed-ups compare like with like).
    """
    if not samples:
        raise UsageError("no inputs to generate from")
    if conditions[0].kind != "baseline":
        raise ValueError("the first condition must be the baseline")
    loaded.generate(batch_inputs(loaded, samples[:1]), max_new_tokens=1)
    token_ids: list[list[list[int]]] = [[] for _ in conditions]
    elapsed = [0.0] * len(conditions)
    for start in range(0, len(samples), batch_size):
        if progress:
            progress(f"inputs {start + 1}-{min(start + batch_size, len(samples))} of {len(samples)}")
        inputs = batch_inputs(loaded, samples[start : start + batch_size])
        for index, condition in enumerate(conditions):  # interleaved, so load changes hit all conditions
            ids, seconds = generate_batch(loaded, inputs, condition, max_new_tokens)
            token_ids[index].extend(ids)
            elapsed[index] += seconds
    generations = [
        Generation(condition, ids, [loaded.decode(t) for t in ids], seconds)
        for condition, ids, seconds in zip(conditions, token_ids, elapsed, strict=True)
    ]
    return [summarise(generations[0], g, samples) for g in generations]
