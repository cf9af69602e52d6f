"""The report's view of ``causal.json``: per method, the effect of each layer window on the target's
log-probability and on its logit difference to the alternatives, with intervals over images; the windows
whose interval excludes 0 are named, and the lens-based critical and mutation layers set beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolens.vocabulary import format_layers

MEASURES = (("logprob", "Δ log p(target)"), ("logit_diff", "Δ logit difference"))


def _cell(effect: dict[str, Any], index: int) -> str | None:
    mean, low, high = (effect.get(k) or [None] * (index + 1) for k in ("mean", "low", "high"))
    if mean[index] is None:
        return None
    if low[index] is None or high[index] is None:
        return f"{mean[index]:+.3f}"
    return f"{mean[index]:+.3f} [{low[index]:+.3f}, {high[index]:+.3f}]"


def apart_from_zero(effect: dict[str, Any], windows: list[list[int]]) -> list[int]:
    """The first layers of the windows whose interval excludes 0."""
    low, high = effect.get("low") or [], effect.get("high") or []
    return [
        window[0]
        for window, lo, hi in zip(windows, low, high, strict=False)
        if lo is not None and hi is not None and (lo > 0 or hi < 0)
    ]


def causal_entry(title: str, path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """{"title", "source", "lines", "tables", "details"} (report/experiments.py) for one causal.json."""
    settings = record.get("settings") or {}
    lines = [
        f"{settings.get('model', '?')}: windows of {settings.get('window', '?')} layers; patching from the "
        f"real run into '{settings.get('corrupt', '?')}'; knockout from the {settings.get('queries', '?')} "
        f"position(s); ablation to the image tokens' {settings.get('baseline', '?')} state. Effects are "
        "intervened minus reference (patch: minus the corrupted run), mean over targets, 95% intervals over "
        "images."
    ]
    missing = settings.get("without_target") or []
    if missing:
        lines.append(f"{len(missing)} answers had no answer word and no target (listed in causal.json).")
    keys = {k: v for k, v in (record.get("key_layers") or {}).items() if v is not None}
    if keys:
        lines.append("Lens-based layers: " + ", ".join(f"{k} {v}" for k, v in keys.items()) + ".")
    tables = []
    for method, result in (record.get("methods") or {}).items():
        windows = result.get("windows") or []
        effects = result.get("effects") or {}
        for measure, label in MEASURES:
            if measure in effects and effects[measure].get("n_samples"):
                apart = apart_from_zero(effects[measure], windows)
                lines.append(
                    f"{method}, {label}: interval away from 0 for windows starting at "
                    + (f"layers {format_layers(apart)}" if apart else "no layer")
                    + f" ({result.get('n_samples', '?')} targets, {result.get('n_images', '?')} images)."
                )
        columns = ["layers", *(label for measure, label in MEASURES if measure in effects)]
        rows = [
            [format_layers(window), *(_cell(effects[m], i) for m, _ in MEASURES if m in effects)]
            for i, window in enumerate(windows)
        ]
        tables.append({"title": f"{method}: effect per layer window", "columns": columns, "rows": rows})
    return {"title": title, "source": Path(path).name, "lines": lines, "tables": tables, "details": []}
