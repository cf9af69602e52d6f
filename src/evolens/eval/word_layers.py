"""Hallucinated words layer by layer, on any trace whose samples carry ground truth (shapes world, MSCOCO,
AMBER): every object/attribute mention aligned to its steps, its lens values per layer, by word kind.

``align_mentions`` finds each sample's mentions (``evolens.eval.mentions``) in its joined step tokens and
maps each to its step span. Per mention and lens layer l = 0..L (``mention_values``):

- ``prob``, ``rank``: p_l and the rank of the span's **first token** (the step at which the model chose the
  word; later tokens of a split word are nearly determined by the first);
- ``span_log_prob``: the span aggregate, sum over the span's tokens of log p_l(token) (each step's lens
  at layer l, given the tokens before it): the whole word's log-probability at layer l;
- ``correct_leads``: whether a correct alternative is the top-1 token (``evolens.eval.leads``; NaN where
  the ground truth offers none).

And its stage values, with the trace's stages (critical layer c, first mutation layer m; ``analysis``):
``prob_critical`` (p_c of the first token), ``jsd_mutation`` (max_{l >= m} JSD(p_{l-1}, p_l) of the first
token), ``decision_layer`` (the first layer from which the first token stays top-1 to the end; None if it is
not top-1 at the end) and its stage, ``overtaken`` (``leads.overtaken`` at m), ``last_correct_lead``.

``word_report`` summarises per kind (``object``, ``attribute``) and label (grounded, hallucinated): mean
curves with a two-stage cluster bootstrap over images (``analysis.bootstrap``: images, then the samples of
each), and each scalar's AUROC for hallucinated vs grounded with a bootstrap interval over images.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.eval.chair import CocoSynonyms, caption_objects
from evolens.eval.leads import correct_leads, last_lead, overtaken
from evolens.eval.mentions import (
    Mention,
    amber_mentions,
    coco_mentions,
    shapes_mentions,
    step_span,
    token_offsets,
)

if TYPE_CHECKING:
    from evolens.analysis.stages import StageResult
    from evolens.eval.amber import AmberData
    from evolens.io.trace import Trace

FALLBACK_MUTATION_LAYERS = 5


@dataclass
class AlignedMentions:
    """The mentions of a trace with their steps.

    Attributes:
        mentions: (n,) the mentions, sample by sample in text order.
        samples: (n,) the index in ``trace.samples`` of each mention's sample.
        rows: (n,) the ``trace.steps`` row of each span's first token; spans: (n,) all its rows.
        skipped: samples left out, by reason (none dropped silently).
    """

    mentions: list[Mention]
    samples: np.ndarray
    rows: np.ndarray
    spans: list[np.ndarray]
    skipped: dict[str, int] = field(default_factory=dict)


def _truth(value: Any) -> dict[str, Any] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    truth = json.loads(value) if isinstance(value, str) else value
    return truth if isinstance(truth, dict) else None


def sample_mentions(
    text: str, truth: dict[str, Any], amber: AmberData | None, synonyms: CocoSynonyms
) -> list[Mention] | str:
    """The mentions of one generation, or why it cannot be labelled (a reason string)."""
    from evolens.data.shapes import Scene

    source = truth.get("source")
    if source == "shapes":
        return shapes_mentions(text, Scene.from_dict({k: v for k, v in truth.items() if k != "source"}))
    if source == "coco":
        if "objects" not in truth and "captions" not in truth:
            return "coco sample without objects or captions"
        found = {synonyms.category_of.get(name, name) for name in truth.get("objects", [])}
        for reference in truth.get("captions", []):
            found |= {m.category for m in caption_objects(reference, synonyms)}
        return coco_mentions(text, found, synonyms)
    if source == "amber":
        if amber is None:
            return "amber sample (no --amber-dir given)"
        annotation = amber.annotations.get(int(truth["id"]))
        if annotation is None:
            return "amber sample without a generative annotation"
        return amber_mentions(text, annotation, amber)
    return f"ground truth of source {source!r} names no objects"


def align_mentions(trace: Trace, amber: AmberData | None = None) -> AlignedMentions:
    """Every labelled mention of ``trace``, aligned to its steps."""
    synonyms = CocoSynonyms.load()
    tokens = trace.steps["token"].to_numpy()
    mentions: list[Mention] = []
    samples, rows, spans = [], [], []
    skipped: Counter[str] = Counter()
    for index, sample in enumerate(trace.samples.itertuples(index=False)):
        truth = _truth(getattr(sample, "ground_truth", None))
        if truth is None:
            skipped["no ground truth"] += 1
            continue
        sample_rows = trace.rows_of(sample.sample_id)
        sample_tokens = [str(t) for t in tokens[sample_rows]]
        found = sample_mentions("".join(sample_tokens), truth, amber, synonyms)
        if isinstance(found, str):
            skipped[found] += 1
            continue
        offsets = token_offsets(sample_tokens)
        for mention in found:
            first, last = step_span(offsets, mention.start, mention.end)
            mentions.append(mention)
            samples.append(index)
            rows.append(sample_rows[first])
            spans.append(sample_rows[first : last + 1])
    return AlignedMentions(
        mentions, np.array(samples, dtype=np.int64), np.array(rows, dtype=np.int64), spans, dict(skipped)
    )


def mention_values(trace: Trace, aligned: AlignedMentions, stages: StageResult) -> dict[str, np.ndarray]:
    """Per-layer curves (n, L+1) and stage scalars (n,) of every mention (module docstring);
    ``decision_stage`` (n,) holds the stage names of the decision layers (None where there is none)."""
    from evolens.analysis.token_strings import TokenStrings

    n_layers, rows = trace.n_layers, aligned.rows
    critical = stages.critical_layer if stages.critical_layer is not None else n_layers
    mutation = stages.mutation_layer or n_layers - FALLBACK_MUTATION_LAYERS + 1
    prob, rank = trace.matrix("prob"), trace.matrix("rank")
    log_prob = np.log(np.clip(prob, 1e-30, None))
    span_log_prob = np.stack([log_prob[span].sum(0) for span in aligned.spans])
    hallucinated = np.array([m.hallucinated for m in aligned.mentions], dtype=bool)
    top1 = trace.topk()[0][rows, :, 0]
    leads = correct_leads(top1, [m.alternatives for m in aligned.mentions], TokenStrings(trace))
    first_rank = rank[rows]
    decision = np.array([_decision_layer(r) for r in first_rank], dtype=np.float64)
    stage = [stages.stage_of(int(d)) if np.isfinite(d) else None for d in decision]
    return {
        "decision_stage": np.array(stage, dtype=object),
        "prob": prob[rows],
        "rank": first_rank,
        "span_log_prob": span_log_prob,
        "correct_leads": leads,
        "prob_critical": prob[rows, critical],
        "jsd_mutation": trace.matrix("jsd_next")[rows, mutation - 1 :].max(1),
        "decision_layer": decision,
        "overtaken": overtaken(leads, hallucinated, first_rank[:, n_layers], mutation),
        "last_correct_lead": np.array([_or_nan(last_lead(row)) for row in leads]),
        "prob_final": prob[rows, n_layers],
    }


def _decision_layer(rank: np.ndarray) -> float:
    """The first layer from which ``rank`` (L+1,) stays 0 to the end; NaN when the last layer's is not 0."""
    if rank[-1] != 0:
        return float("nan")
    above = np.flatnonzero(rank != 0)
    return float(above[-1] + 1) if len(above) else 0.0


def _or_nan(value: int | None) -> float:
    return float("nan") if value is None else float(value)
