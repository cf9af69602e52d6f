"""The image effect: what the image changes in each layer's reading of the same tokens.

A null trace scores the real trace's own generated tokens again under another input condition: without the
image, with a uniform image of its size and mean colour, or with another sample's image (``evolens score
--from TRACE --condition ...``; a run's ``nulls:`` section). For each condition and each metric of
``evolens.vocabulary.IMAGE_EFFECT``, every generated token (sample_id, step) gives the paired difference
d_l = real_l - null_l at each lens layer l; summary.json's ``image_effect`` holds per layer the mean of d
over tokens and a simultaneous 95% band from the two-stage image bootstrap (``image_clusters``: images,
then the prompts within them). A band that leaves 0 says the image changes that layer's reading.

The emitted token's log-probability (``log_prob``) is log(p) with p floored at the smallest normal
float32 (a stored probability of exactly 0 reads as -87.3 nats, not -inf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolens.analysis.distribution import metric_layers, metric_values
from evolens.analysis.image_clusters import DEFAULT_LEVEL, Band, image_bootstrap, image_ids
from evolens.errors import UsageError
from evolens.io.trace import Trace
from evolens.vocabulary import IMAGE_EFFECT, metric

PROB_FLOOR = float(np.finfo(np.float32).tiny)
NO_NULLS = "no null traces given (evolens analyze TRACE --null DIR, or nulls: in the run config)"


@dataclass(frozen=True)
class ImageEffectCurves:
    """The figure of summary.json's ``image_effect`` (one panel per metric, one line and band per null
    condition)."""

    effect: dict[str, Any]


def nulls_by_condition(traces: Sequence[Trace]) -> dict[str, Trace]:
    """The null traces keyed by the condition their meta.json records; a trace without one (not a scoring
    of another trace) or two traces of one condition are a UsageError."""
    nulls: dict[str, Trace] = {}
    for null in traces:
        condition = null.meta.get("condition")
        if not condition or null.meta.get("mode") != "score":
            raise UsageError(
                f"--null {null.directory}: not a scored trace with a condition "
                "(make one with evolens score --from TRACE --condition no-image|blank|shuffled)"
            )
        if condition in nulls:
            raise UsageError(
                f"--null {null.directory}: a second null of condition '{condition}' "
                f"(the first: {nulls[condition].directory}); give one per condition"
            )
        nulls[str(condition)] = null
    return nulls


def paired_rows(trace: Trace, null: Trace, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(real rows, null rows): the rows of ``trace.steps`` and ``null.steps`` holding the same sample and
    step, for every sample of the null. A null of another model, lens or depth, one with samples the trace
    lacks, or one whose tokens differ is refused (a one-line UsageError); a null that lacks some of the
    trace's samples (failed or limited) pairs the ones it has."""
    where = f"null '{name}' ({null.directory})"
    for key in ("model", "lens", "lens_path", "n_layers"):
        if trace.meta.get(key) != null.meta.get(key):
            raise UsageError(
                f"{where}: its {key} is {null.meta.get(key)!r}, the trace's {trace.meta.get(key)!r}; "
                "score the trace's own tokens (evolens score --from TRACE)"
            )
    foreign = sorted(set(null.sample_ids) - set(trace.sample_ids))
    if foreign:
        raise UsageError(f"{where}: holds samples the trace lacks ({', '.join(foreign[:3])} ...)")
    keys = ["sample_id", "step"]
    real = trace.steps[[*keys, "token_id"]].assign(real_row=np.arange(trace.n_tokens))
    real = real[real["sample_id"].isin(set(null.sample_ids))]
    scored = null.steps[[*keys, "token_id"]].assign(null_row=np.arange(null.n_tokens))
    both = real.merge(scored, on=keys, how="outer", suffixes=("", "_null"), indicator=True)
    unmatched = both[(both["_merge"] != "both") | (both["token_id"] != both["token_id_null"])]
    if len(unmatched):
        first = unmatched.iloc[0]
        raise UsageError(
            f"{where}: scores other tokens than the trace (sample {first['sample_id']}, step "
            f"{int(first['step'])}); score the trace's own tokens (evolens score --from TRACE)"
        )
    return both["real_row"].to_numpy(dtype=np.int64), both["null_row"].to_numpy(dtype=np.int64)


def effect_values(trace: Trace, name: str) -> np.ndarray:
    """(n_tokens, L+1), or (n_tokens, L) for a transition metric: the values of one ``IMAGE_EFFECT``
    metric per generated token."""
    if name == "log_prob":
        return np.log(np.maximum(trace.matrix("prob"), PROB_FLOOR))
    return metric_values(trace, name)


def band_dict(band: Band) -> dict[str, Any]:
    """JSON-ready: mean, low, high per layer (6 decimals) and the band's critical value."""

    def floats(values: np.ndarray) -> list[float | None]:
        return [round(float(v), 6) if np.isfinite(v) else None for v in values]

    return {
        "mean": floats(band.mean),
        "low": floats(band.low),
        "high": floats(band.high),
        "critical_value": round(band.critical, 4),
    }


def condition_effect(
    trace: Trace, null: Trace, name: str, n_boot: int, seed: int, level: float
) -> dict[str, Any]:
    """One condition's entry of ``image_effect`` (module doc)."""
    real_rows, null_rows = paired_rows(trace, null, name)
    images = image_ids(trace.samples)
    sample_index = trace.sample_index()[real_rows]
    metrics: dict[str, Any] = {}
    band: Band | None = None
    for key in IMAGE_EFFECT:
        difference = effect_values(trace, key)[real_rows] - effect_values(null, key)[null_rows]
        band = image_bootstrap(difference, sample_index, images, n_boot=n_boot, seed=seed, level=level)
        layers = metric_layers(trace, key)
        apart = (band.low > 0) | (band.high < 0)
        metrics[key] = {
            "label": metric(key).label,
            "layers": layers.tolist(),
            **band_dict(band),
            "layers_apart_from_0": layers[apart].tolist(),
        }
    assert band is not None
    missing = sorted(set(trace.sample_ids) - set(null.sample_ids))
    return {
        "directory": str(null.directory),
        "n_images": band.n_images,
        "n_samples": band.n_samples,
        "n_tokens": band.n_tokens,
        "samples_not_in_null": len(missing),
        "metrics": metrics,
    }


def image_effect(
    trace: Trace,
    nulls: dict[str, Trace] | None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """summary.json's ``image_effect``: per null condition and metric, the per-layer mean of real - null
        with its simultaneous band and the layers where that band leaves 0 (``layers_apart_from_0``: the image
    changes that layer's reading); {"not computed": why} without nulls."""
    if not nulls:
        return {"not computed": NO_NULLS}
    return {
        "difference": "real - null, per generated token (same sample, same step), mean over tokens",
        "resampled": "images, then the samples (prompts) of each drawn image",
        "band": f"simultaneous {round(100 * level)}% over layers (max-t)",
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "metrics": list(IMAGE_EFFECT),
        "conditions": {
            name: condition_effect(trace, null, name, n_boot, seed, level)
            for name, null in sorted(nulls.items())  # the order summary.json keeps (sorted keys)
        },
    }


def effect_notes(effect: dict[str, Any]) -> list[str]:
    """One note per null condition that lacked some of the trace's samples (they were left out)."""
    notes = []
    for name, entry in (effect.get("conditions") or {}).items():
        if entry["samples_not_in_null"]:
            notes.append(
                f"image effect, null '{name}': {entry['samples_not_in_null']} of the trace's samples are "
                f"not in the null trace (failed or not scored) and are left out"
            )
    return notes
