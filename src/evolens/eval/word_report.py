"""``evolens hallucination words``: the word-level results of a trace (``evolens.eval.word_layers``), as
``words.json`` (per word kind and label: curves with image-clustered intervals, stage values, AUROCs) and
``mentions.jsonl`` (one line per mention with its per-layer values).

Intervals: every curve's mean comes with the two-stage cluster bootstrap of ``analysis.bootstrap`` (images,
then the samples of each drawn image; a mention counts as one of its sample's "tokens"), pointwise and as a
simultaneous band; every AUROC with a percentile interval from resampling images
(``association.auroc_with_ci`` with the image as the cluster).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.analysis.bootstrap import bootstrap_mean, image_clusters
from evolens.eval.association import auroc_with_ci
from evolens.eval.mentions import KINDS
from evolens.eval.word_layers import AlignedMentions, align_mentions, mention_values
from evolens.io.atomic import write_json, write_jsonl

if TYPE_CHECKING:
    from evolens.analysis.stages import StageResult
    from evolens.eval.amber import AmberData
    from evolens.io.trace import Trace

SCHEMA = "evolens.hallucination-words/1"
CURVES = ("prob", "log_rank", "span_log_prob", "correct_leads")
SCALARS = ("prob_critical", "jsd_mutation", "decision_layer", "overtaken", "prob_final")
LABELS = ("grounded", "hallucinated")


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def _nanmean(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return _number(defined.mean()) if len(defined) else None


def group_summary(
    values: dict[str, np.ndarray], mask: np.ndarray, aligned: AlignedMentions, images: np.ndarray, n_boot: int
) -> dict[str, Any]:
    """Counts, mean curves with intervals (rows where a curve is undefined left out) and mean scalars of the
    mentions in ``mask`` (n,)."""
    n_samples = len(images)
    curves = {}
    for name in CURVES:
        defined = mask & ~np.isnan(values[name]).any(1)
        with warnings.catch_warnings():  # a group of one sample has a constant band: numpy warns, it is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            curve = bootstrap_mean(
                values[name][defined], aligned.samples[defined], n_samples, n_boot, images=images
            )
        curves[name] = curve.to_dict()
    return {
        "n": int(mask.sum()),
        "n_samples": len(np.unique(aligned.samples[mask])),
        "n_images": len(np.unique(images[aligned.samples[mask]])),
        "curves": curves,
        "means": {name: _nanmean(values[name][mask]) for name in SCALARS},
        "decision_stages": dict(Counter(str(s) for s in values["decision_stage"][mask])),
    }


def overtaken_summary(values: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """For the hallucinated mentions in ``mask`` that have a correct alternative: how many were overtaken at
    the mutation layer, and the last layer at which the correct word led (or never)."""
    defined = mask & ~np.isnan(values["correct_leads"]).any(1)
    last = values["last_correct_lead"][defined]
    return {
        "n_with_alternative": int(defined.sum()),
        "n_without_alternative": int((mask & ~defined).sum()),
        "overtaken": int(np.nansum(values["overtaken"][defined])),
        "never_led": int(np.isnan(last).sum()),
        "last_layer_correct_led": sorted(int(v) for v in last[~np.isnan(last)]),
    }


def word_report(
    trace: Trace, aligned: AlignedMentions, values: dict[str, np.ndarray], stages: StageResult, n_boot: int
) -> dict[str, Any]:
    """``words.json``'s content: per kind and label, counts, curves, stage values and AUROCs."""
    images = image_clusters(trace.samples)
    hallucinated = np.array([m.hallucinated for m in aligned.mentions], dtype=bool)
    kinds = np.array([m.kind for m in aligned.mentions])
    mention_images = images[aligned.samples] if len(aligned.samples) else np.zeros(0, dtype=np.int64)
    by_kind = {}
    for kind in ("all", *KINDS):
        in_kind = np.ones(len(kinds), dtype=bool) if kind == "all" else kinds == kind
        by_kind[kind] = {
            label: group_summary(
                values, in_kind & (hallucinated == (label == "hallucinated")), aligned, images, n_boot
            )
            for label in LABELS
        }
        by_kind[kind]["auroc"] = {
            name: auroc_with_ci(values[name][in_kind], hallucinated[in_kind], mention_images[in_kind], n_boot)
            for name in SCALARS
        }
        by_kind[kind]["correct_word"] = overtaken_summary(values, in_kind & hallucinated)
    return {
        "schema": SCHEMA,
        "trace": str(trace.directory),
        "model": trace.meta.get("model"),
        "n_layers": trace.n_layers,
        "stages": stages.to_dict(),
        "n_samples": len(trace.samples),
        "n_mentions": len(aligned.mentions),
        "n_hallucinated": int(hallucinated.sum()),
        "skipped_samples": aligned.skipped,
        "resampled": "images, then samples within each image",
        "by_kind": by_kind,
    }


def mention_lines(
    trace: Trace, aligned: AlignedMentions, values: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """``mentions.jsonl``: one record per mention, its steps and tokens, per-layer values and scalars."""
    samples = trace.samples.reset_index(drop=True)
    tokens = trace.steps["token"].to_numpy()
    steps = trace.steps["step"].to_numpy()
    lines = []
    for i, mention in enumerate(aligned.mentions):
        sample = samples.iloc[int(aligned.samples[i])]
        span = aligned.spans[i]
        lines.append(
            {
                "sample_id": sample["sample_id"],
                "image": sample["image"],
                "word": mention.word,
                "kind": mention.kind,
                "category": mention.category,
                "hallucinated": mention.hallucinated,
                "alternatives": list(mention.alternatives),
                "steps": [int(steps[span[0]]), int(steps[span[-1]])],
                "tokens": [str(t) for t in tokens[span]],
                **{name: [_number(v) for v in values[name][i]] for name in ("prob", "rank", "span_log_prob")},
                "correct_leads": [_number(v) for v in values["correct_leads"][i]],
                **{name: _number(values[name][i]) for name in (*SCALARS, "last_correct_lead")},
                "decision_stage": values["decision_stage"][i],
            }
        )
    return lines


def write_words(
    trace_dir: str | Path, out_dir: str | Path, amber: AmberData | None = None, n_boot: int = 1000
) -> dict[str, Any]:
    """Align, measure and write ``out_dir/words.json`` and ``out_dir/mentions.jsonl``; returns the report."""
    from evolens.analysis import detect_stages, load_trace
    from evolens.errors import InputError

    trace = load_trace(trace_dir)
    aligned = align_mentions(trace, amber)
    if not aligned.mentions:
        reasons = ", ".join(f"{n} {why}" for why, n in aligned.skipped.items()) or "no object words"
        raise InputError(f"{trace_dir}: no object mention to analyse ({reasons})")
    stages = detect_stages(trace)
    values = mention_values(trace, aligned, stages)
    values["log_rank"] = np.log1p(values["rank"])
    report = word_report(trace, aligned, values, stages, n_boot)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "words.json", report)
    write_jsonl(out / "mentions.jsonl", mention_lines(trace, aligned, values))
    return report
