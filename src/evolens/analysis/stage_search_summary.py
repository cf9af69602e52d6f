"""summary.json's ``stages``: the found stages per scope, their intervals, and plain verdicts.

``stages_summary`` runs the search (``stage_search``) and the bootstrap (``stage_search_intervals``) on a
trace and writes, per scope (all tokens, content words, function words): the boundaries that beat the nulls
(layer, change, thresholds, found_share and intervals), the segments (named where the three-stage story
fits), the penalty and how it was chosen, the change a boundary would make at every layer (``evidence``),
the candidates the null traces removed, and verdicts in words, where "not found" is said plainly.
``legacy_fields`` marks the threshold rule's older fields as such.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from evolens.analysis.stage_search import (
    FEATURES,
    ScopeSearch,
    StageSearch,
    StageSearchConfig,
    search_stages,
)
from evolens.analysis.stage_search_intervals import search_intervals
from evolens.analysis.stages import StageResult
from evolens.io.trace import Trace
from evolens.vocabulary import format_layers, layer_span, stage_label

METHOD = (
    "change points of how much each layer changes the readout (token-weighted mean over layers 2..L of Δ, "
    "|Δ ln p|, |Δ log-rank|, |Δ entropy|; the first transition left out), standardized by their "
    "between-image noise; exact "
    "least-squares segmentation (ruptures PELT) with a penalty per boundary set by the layer-permutation "
    "and sampling-noise nulls, and each boundary tested against every null trace (docs/analysis.md)"
)
LEGACY_FIELDS = (
    "critical_layer",
    "critical_layer_prob",
    "critical_agreement",
    "mutation_layer",
    "mutation_layers",
    "mutation_causes",
    "legacy_stages",
    "critical_layer_ci",
    "critical_layer_prob_ci",
    "mutation_layer_ci",
    "confidence_intervals",
    "stability",
    "detector",
    "tokens",
    "per_token_summary",
)


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _share(interval: dict, level: float) -> str:
    """ "found in 97% of replicates, 95% interval 11-13" ("12 to not found" when "not found" is inside)."""
    low, high = interval["interval"]
    if low is None:
        span = "not found"
    elif high is None:
        span = f"{low} to not found"
    else:
        span = f"{low}" if low == high else f"{low}-{high}"
    return f"found in {interval['found_share']:.0%} of replicates, {level:.0%} interval {span}"


def largest_change(result: ScopeSearch, after: int) -> tuple[float, int | None]:
    """The largest change a boundary at a layer > ``after`` would make given the found ones, and where."""
    best, where = -math.inf, None
    for position, change in enumerate(result.evidence):
        layer = int(result.signal.layers[position])
        if layer > after and math.isfinite(change) and change > best:
            best, where = float(change), layer
    return best, where


def verdicts(result: ScopeSearch, intervals: dict) -> list[str]:
    """The scope's findings in words (module doc)."""
    threshold, level = result.penalty.value, intervals["level"]
    lines = []
    if result.boundaries:
        lines.append(
            "boundaries: "
            + "; ".join(
                f"layer {b.layer} (change {b.change:.4g} > threshold {threshold:.4g}; {_share(i, level)})"
                for b, i in zip(result.boundaries, intervals["boundaries"], strict=True)
            )
        )
    elif result.penalty.note:
        lines.append(f"boundaries: none: {result.penalty.note}")
    elif result.rejected:
        lines.append(
            "boundaries: none: the penalty alone finds candidates at layers "
            f"{format_layers(r.layer for r in result.rejected)} (threshold {threshold:.4g}), and each is "
            "matched by a null trace (the image does not make them; listed below)"
        )
    else:
        change, where = largest_change(result, 0)
        lines.append(
            "boundaries: none: no change beats the nulls"
            + (f" (largest {change:.4g} at layer {where}; threshold {threshold:.4g})" if where else "")
        )
    fits, unfit = result.naming.fits, bool(result.boundaries) and not result.naming.fits

    def replicates(key: str) -> str:
        return f"{intervals[key]['found_share']:.0%} of replicates find one"

    critical = result.stage_start("stabilization")
    if critical is not None:
        first = int(result.signal.layers[0])
        start = (
            "stabilization starts at the first layer searched: no rapid-evolution segment after the first "
            "transition (layer 1, left out); "
            if critical == first
            else "stabilization starts; "
        )
        lines.append(f"critical layer: {critical} ({start}{_share(intervals['critical_layer'], level)})")
    elif unfit:
        lines.append(
            f"critical layer: not named: the segments do not fit the story ({replicates('critical_layer')})"
        )
    else:
        lines.append(
            f"critical layer: not found (no boundary beats the nulls; {replicates('critical_layer')})"
        )
    mutation = result.stage_start("mutation")
    if mutation is not None:
        lines.append(
            f"mutation stage: {layer_span(mutation, result.n_layers)} "
            f"({_share(intervals['mutation_layer'], level)})"
        )
    else:
        after = max(critical or 0, math.ceil(result.config.mutation_min_depth * result.n_layers) - 1)
        late = [b.layer for b in result.boundaries if b.layer > after]
        if unfit:
            lines.append(
                "mutation stage: not named: the segments do not fit the story "
                f"({replicates('mutation_layer')})"
            )
        elif late and fits:
            lines.append(
                f"mutation stage: not found (boundaries after layer {after}, at {format_layers(late)}, beat "
                "the nulls, but no late segment changes more than stabilization; "
                f"{replicates('mutation_layer')})"
            )
        elif result.rejected and not late:
            lines.append(
                f"mutation stage: not found (no boundary after layer {after} beats the null traces; "
                f"{replicates('mutation_layer')})"
            )
        else:
            change, where = largest_change(result, after)
            detail = (
                f"the largest change a boundary there would make is {change:.4g} at layer {where}; "
                if where
                else ""
            )
            lines.append(
                f"mutation stage: not found (no boundary after layer {after} beats the nulls: {detail}"
                f"threshold {threshold:.4g}; {replicates('mutation_layer')})"
            )
    lines += [f"  candidate at layer {r.layer} removed: {r.reason}" for r in result.rejected]
    lines.append(
        ("three-stage story: fits: " if result.naming.fits else "three-stage story: does not fit: ")
        + result.naming.note
    )
    return lines


def scope_summary(result: ScopeSearch, intervals: dict) -> dict[str, Any]:
    """One scope's entry of summary.json's ``stages`` (module doc)."""
    signal, mean = result.signal, result.signal.mean()
    edges = [0, *(b.position for b in result.boundaries), len(mean)]
    segments = []
    for (start, end), name, (a, b) in zip(
        result.spans, result.naming.names, itertools.pairwise(edges), strict=True
    ):
        label = f"{stage_label(name)}: {layer_span(start, end)}" if name else layer_span(start, end)
        segments.append(
            {
                "name": name,
                "label": label,
                "start": start,
                "end": end,
                "means": {f: _number(float(v)) for f, v in zip(FEATURES, mean[a:b].mean(0), strict=True)},
            }
        )
    boundaries = [
        {
            "layer": b.layer,
            "change": _number(b.change),
            "threshold": _number(result.penalty.value),
            "nulls": {c: {k: _number(v) for k, v in values.items()} for c, values in b.nulls.items()},
            "steps": {f: _number(v) for f, v in b.steps.items()},
            **interval,
        }
        for b, interval in zip(result.boundaries, intervals["boundaries"], strict=True)
    ]
    return {
        "n_tokens": signal.n_tokens,
        "n_samples": len(signal.sample_ids),
        "n_images": signal.n_images,
        "features": [f for f, used in zip(FEATURES, result.standardize.used, strict=True) if used],
        "penalty": result.penalty.to_dict(),
        "boundaries": boundaries,
        "segments": segments,
        "story": {"fits": result.naming.fits, "note": result.naming.note},
        "critical_layer": {"layer": result.stage_start("stabilization"), **intervals["critical_layer"]},
        "mutation_layer": {"layer": result.stage_start("mutation"), **intervals["mutation_layer"]},
        "n_boundaries_share": intervals["n_boundaries"],
        "story_fits_share": intervals["story_fits_share"],
        "evidence": {
            "layers": [int(layer) for layer in signal.layers],
            "change": [_number(v) for v in result.evidence],
            "threshold": _number(result.penalty.value),
        },
        "rejected": [
            {"layer": r.layer, "change": _number(r.change), "reason": r.reason} for r in result.rejected
        ],
        "null_traces": {
            "critical": _number(result.null_critical) if result.null_critical is not None else None,
            "paired": result.paired,
        },
        "verdicts": verdicts(result, intervals),
        "bootstrap": {k: intervals[k] for k in ("n_boot", "seed", "level", "resampled", "match_layers")},
    }


def stages_summary(
    trace: Trace,
    nulls: Mapping[str, Trace] | None = None,
    config: StageSearchConfig | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, Any], StageSearch]:
    """summary.json's ``stages`` for ``trace`` (and the search behind it)."""
    search = search_stages(trace, nulls, config)
    scopes = {
        scope: scope_summary(result, search_intervals(result, n_boot, seed, search.config.level))
        for scope, result in search.scopes.items()
    }
    headline = scopes.get("all", {}).get("verdicts") or [f"not run: {search.skipped.get('all', '')}"]
    return (
        {
            "method": METHOD,
            "first_layer": 2,
            "config": search.config.to_dict(),
            "null_conditions": list(search.nulls),
            "verdicts": headline,
            "scopes": scopes,
            "skipped": search.skipped,
        },
        search,
    )


def legacy_fields(legacy: StageResult) -> dict[str, Any]:
    """The threshold rule's stage list under ``legacy_stages``, and ``legacy_rule`` naming every field it
    wrote (kept for compatibility; the headline is ``stages``)."""
    return {
        "legacy_stages": [stage.to_dict() for stage in legacy.stages],
        "legacy_rule": {
            "fields": list(LEGACY_FIELDS),
            "rule": (
                "the threshold detector (StageConfig): critical = the first layer after which "
                "min_stable_layers consecutive changes stay below jsd_threshold x the largest change; "
                "three stages assumed, no null"
            ),
            "note": "kept for compatibility; the stages found against the nulls are `stages`",
        },
    }


def found_stages(search_summary: dict[str, Any]) -> list[dict[str, Any]]:
    """summary.json's ``stages``: the segments the search found over all tokens (named where the three-stage
    story fits, else "segment"), each with ``found_share``: the share of bootstrap replicates that find the
    boundary it starts at (1.0 for the first segment, which always exists). Empty when the search did not
    run."""
    scope = search_summary.get("scopes", {}).get("all")
    if not scope:
        return []
    shares = [1.0, *(b["found_share"] for b in scope["boundaries"])]
    return [
        {
            "name": segment["name"] or "segment",
            "start": segment["start"],
            "end": segment["end"],
            "label": segment["label"],
            "found_share": share,
        }
        for segment, share in zip(scope["segments"], shares, strict=True)
    ]
