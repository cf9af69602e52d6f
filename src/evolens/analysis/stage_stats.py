"""The stage detector at dataset scale: per token, bootstrap intervals, and stability under its thresholds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from evolens.analysis.bootstrap import (
    RESAMPLED,
    image_clusters,
    percentile_interval,
    replicate_means,
    two_stage_counts,
)
from evolens.analysis.stages import StageConfig, StageResult, detect_curves, log_rank, mean_curves
from evolens.analysis.tokens import kinds_for_trace
from evolens.io.trace import Trace

JSD_THRESHOLD_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
PROB_RISE_LEVELS = (0.3, 0.5, 0.7)


def per_token_stages(trace: Trace, config: StageConfig) -> pd.DataFrame:
    """One row per generated token: its own critical and mutation layers.

    Columns: sample_id, step, token, kind, critical_layer, critical_layer_prob, critical_difference,
    critical_agree, mutation_layer, mutation_layers (list), final_prob (p_L of the emitted token).
    """
    jsd, prob, ranks = trace.matrix("jsd_next"), trace.matrix("prob"), log_rank(trace.matrix("rank"))
    kinds = kinds_for_trace(trace)
    rows = []
    for i in range(trace.n_tokens):
        result = detect_curves(jsd[i], prob[i], ranks[i], config)
        rows.append(
            {
                "sample_id": trace.steps["sample_id"].iat[i],
                "step": int(trace.steps["step"].iat[i]),
                "token": trace.steps["token"].iat[i],
                "kind": kinds[i],
                "critical_layer": result.critical_layer,
                "critical_layer_prob": result.critical_layer_prob,
                "critical_difference": result.critical_difference,
                "critical_agree": result.critical_agree,
                "mutation_layer": result.mutation_layer,
                "mutation_layers": list(result.mutation_layers),
                "final_prob": round(float(prob[i, -1]), 6),
            }
        )
    return pd.DataFrame(rows)


def per_token_overview(tokens: pd.DataFrame) -> dict:
    """How the per-token layers are distributed: medians, quartiles, and how often each is found."""

    def spread(column: str) -> dict:
        values = pd.to_numeric(tokens[column], errors="coerce").dropna()
        if values.empty:
            return {"found": 0.0, "median": None, "q25": None, "q75": None}
        q25, median, q75 = np.percentile(values, [25, 50, 75])
        return {
            "found": round(len(values) / len(tokens), 4),
            "median": float(median),
            "q25": float(q25),
            "q75": float(q75),
        }

    agree = tokens["critical_agree"].dropna()
    return {
        "n_tokens": len(tokens),
        "critical_layer": spread("critical_layer"),
        "critical_layer_prob": spread("critical_layer_prob"),
        "mutation_layer": spread("mutation_layer"),
        "critical_agreement_rate": round(float(agree.astype(bool).mean()), 4) if len(agree) else None,
    }


def stage_intervals(
    trace: Trace, config: StageConfig, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Cluster-bootstrap intervals of the legacy threshold rule's critical and mutation layers.

    Each replicate redraws images, then the samples of each image (``bootstrap.two_stage_counts``),
    recomputes the mean curves and reruns the detector. The interval is over the replicates that found the
    layer; ``found`` says what share did (the replicates without one are counted there, not hidden).
    """
    clusters, n_clusters = trace.sample_index(), len(trace.samples)
    counts = two_stage_counts(image_clusters(trace.samples), n_boot, seed)
    jsd = replicate_means(trace.matrix("jsd_next"), clusters, n_clusters, counts)
    prob = replicate_means(trace.matrix("prob"), clusters, n_clusters, counts)
    ranks = replicate_means(log_rank(trace.matrix("rank")), clusters, n_clusters, counts)
    found: dict[str, list[float]] = {"critical_layer": [], "critical_layer_prob": [], "mutation_layer": []}
    for b in range(n_boot):
        result = detect_curves(jsd[b], prob[b], ranks[b], config)
        for key in found:
            value = getattr(result, key)
            found[key].append(np.nan if value is None else float(value))
    estimate = detect_curves(*mean_curves(trace), config=config)
    intervals = {}
    for key, values in found.items():
        replicates = np.asarray(values)
        low, high = percentile_interval(replicates, level)
        intervals[key] = {
            "estimate": getattr(estimate, key),
            "low": None if np.isnan(low) else low,
            "high": None if np.isnan(high) else high,
            "found": round(float(np.isfinite(replicates).mean()), 4),
        }
        intervals[key]["found_share"] = intervals[key]["found"]
    return {"level": level, "n_boot": n_boot, "seed": seed, "resampled": RESAMPLED, **intervals}


def threshold_stability(trace: Trace, config: StageConfig) -> dict:
    """The dataset's layers when each threshold is varied around its value, the others held fixed.

    Returns ``jsd_threshold`` and ``prob_rise_fraction`` sweeps (lists of {value, critical_layer,
    critical_layer_prob, mutation_layer}) and, per layer, the range it spans over the sweeps.
    """
    curves = mean_curves(trace)
    sweeps: dict[str, list[dict]] = {"jsd_threshold": [], "prob_rise_fraction": []}
    for factor in JSD_THRESHOLD_FACTORS:
        value = min(1.0, config.jsd_threshold * factor)
        sweeps["jsd_threshold"].append(
            _sweep_row(value, detect_curves(*curves, config=replace(config, jsd_threshold=value)))
        )
    for value in PROB_RISE_LEVELS:
        result = detect_curves(*curves, config=replace(config, prob_rise_fraction=value))
        sweeps["prob_rise_fraction"].append(_sweep_row(value, result))
    spans = {}
    for key, sweep in (
        ("critical_layer", "jsd_threshold"),
        ("mutation_layer", "jsd_threshold"),
        ("critical_layer_prob", "prob_rise_fraction"),
    ):
        values = [row[key] for row in sweeps[sweep]]
        present = [v for v in values if v is not None]
        spans[key] = {
            "swept": sweep,
            "min": min(present) if present else None,
            "max": max(present) if present else None,
            "missing": len(values) - len(present),
        }
    return {"sweeps": sweeps, "spans": spans}


def _sweep_row(value: float, result: StageResult) -> dict:
    return {
        "value": round(value, 4),
        "critical_layer": result.critical_layer,
        "critical_layer_prob": result.critical_layer_prob,
        "mutation_layer": result.mutation_layer,
    }
