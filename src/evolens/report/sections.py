"""The report's dataset-level sections, read from the files the earlier stages wrote.

Stages and the per-layer means with their cluster-bootstrap CIs come from the analysis' ``summary.json``,
as it wrote them: the report never recomputes them, so the report and summary.json never disagree. What a
summary.json lacks (no analysis ran, or an older evolens wrote it) is left out and named in the notes
(``summary_notes``). A JSON file without a dedicated view (``report.experiments``) becomes plain tables;
PNG figures are embedded as data URIs. Every reader tolerates a missing file: the report then leaves that
section out.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from evolens.vocabulary import METRICS, OVERVIEW, layer_span, stage_label

MAX_FIGURE_BYTES = 3_000_000


def layer_curves(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The dataset curves (``evolens.vocabulary.OVERVIEW``) that summary.json's ``distribution`` holds:
    per-layer mean over all generated tokens with its 95% bootstrap CI resampling whole samples; a
    transition metric (``jsd_next``) sits at layers 1..L (the change a layer made)."""
    distribution = (summary or {}).get("distribution") or {}
    curves = []
    for key in OVERVIEW:
        if key not in distribution:
            continue
        overall = distribution[key]["all"]
        curves.append(
            {
                "key": key,
                "label": METRICS[key].label,
                "layers": list(distribution[key]["layers"]),
                "mean": overall["mean"],
                "low": overall["low"],
                "high": overall["high"],
            }
        )
    return curves


def summary_notes(summary: dict[str, Any] | None) -> list[str]:
    """What the report cannot show because summary.json lacks it (no analysis, or an older evolens)."""
    if summary is None:
        return ["no analysis (summary.json): the stages and the per-layer curves are not shown"]
    notes = []
    distribution = summary.get("distribution") or {}
    missing = [key for key in OVERVIEW if key not in distribution]
    if missing:
        notes.append(
            f"summary.json has no per-layer statistics of {', '.join(missing)} (written by an older "
            "evolens): those dataset curves are not shown; run evolens analyze again"
        )
    if "token_strings" not in summary:
        notes.append(
            "summary.json has no token strings (written by an older evolens): top-k tokens the trace "
            "does not name itself are shown as #id; run evolens analyze again"
        )
    return notes


def stages_section(summary: dict[str, Any] | None, n_layers: int) -> dict[str, Any] | None:
    """Critical and mutation layers (with CIs when given) and the stage spans, from ``summary.json``."""
    if not summary:
        return None
    critical, critical_ci = value_and_ci(summary, "critical_layer")
    mutation, mutation_ci = value_and_ci(summary, "mutation_layer")
    search = summary.get("stage_search") or {}
    found = (search.get("scopes") or {}).get("all")
    if found:  # the stages found against the nulls are the headline; the threshold rule's are legacy
        critical, critical_ci = searched_layer(found, "critical_layer")
        mutation, mutation_ci = searched_layer(found, "mutation_layer")
    stages = [
        stage_entry(str(s["name"]), int(s["start"]), int(s["end"]))
        for s in summary.get("stages") or []
        if isinstance(s, dict) and {"name", "start", "end"} <= s.keys()
    ]
    return {
        "n_layers": int(summary.get("n_layers", n_layers)),
        "critical_layer": critical,
        "critical_ci": critical_ci,
        "mutation_layer": mutation,
        "mutation_ci": mutation_ci,
        "stages": stages,
        "verdicts": [str(line) for line in search.get("verdicts") or []],
        "method": search.get("method"),
        "details": _scalar_items(summary),
    }


def searched_layer(scope: dict[str, Any], key: str) -> tuple[float | None, list[float] | None]:
    """The stage search's critical or mutation layer and its interval (None where "not found" lies inside
    it), from one scope of summary.json's ``stage_search``."""
    entry = scope.get(key) or {}
    layer = entry.get("layer")
    low, high = (entry.get("interval") or [None, None])[:2]
    interval = None if low is None or high is None else [float(low), float(high)]
    return (None if layer is None else float(layer)), interval


def stage_entry(name: str, start: int, end: int) -> dict[str, Any]:
    """A stage for the page: its span, and its label as the figures write it ("mutation: layer 30")."""
    return {
        "name": name,
        "start": start,
        "end": end,
        "label": f"{stage_label(name)}: {layer_span(start, end)}",
    }


def value_and_ci(summary: dict[str, Any], key: str) -> tuple[float | None, list[float] | None]:
    """``summary[key]`` as (value, [low, high]): a number, a list of layers, or a dict with a CI inside."""
    value = summary.get(key)
    ci = summary.get(f"{key}_ci")
    if isinstance(value, dict):
        ci = ci or value.get("ci") or value.get("ci95") or _pair(value.get("low"), value.get("high"))
        value = next((value[k] for k in ("value", "layer", "median", "mean", "estimate") if k in value), None)
    if isinstance(value, list):
        value = value[0] if value else None
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    interval = [float(ci[0]), float(ci[1])] if isinstance(ci, list | tuple) and len(ci) == 2 else None
    return number, interval


def _pair(low: Any, high: Any) -> list[Any] | None:
    return [low, high] if low is not None and high is not None else None


def _scalar_items(summary: dict[str, Any]) -> dict[str, Any]:
    """Top-level scalar settings of the summary (thresholds, counts) for the stages card."""
    return {k: v for k, v in summary.items() if isinstance(v, str | int | float | bool) and k != "n_layers"}


def tables_from_json(title: str, value: Any) -> list[dict[str, Any]]:
    """Tables for the report from an experiment's JSON: lists of records become tables, nested mappings
    become one table per key, a flat mapping a two-column table."""
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        columns = list(dict.fromkeys(k for row in value for k, v in row.items() if _is_cell(v)))
        rows = [[_cell(row.get(c)) for c in columns] for row in value]
        return [{"title": title, "columns": columns, "rows": rows}]
    if isinstance(value, dict):
        tables: list[dict[str, Any]] = []
        flat = {k: v for k, v in value.items() if _is_cell(v)}
        if flat:
            tables.append(
                {"title": title, "columns": ["", "value"], "rows": [[k, _cell(v)] for k, v in flat.items()]}
            )
        for key, nested in value.items():
            if not _is_cell(nested):
                tables.extend(tables_from_json(f"{title}: {key}", nested))
        return tables
    return []


def _is_cell(value: Any) -> bool:
    """A value that fits in one table cell: a scalar, a short list of numbers, or a statistic with an
    interval ({"mean", "low", "high"})."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return len(value) <= 64 and all(isinstance(v, int | float) for v in value)
    return (
        isinstance(value, dict)
        and "mean" in value
        and not any(isinstance(v, dict | list) for v in value.values())
    )


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        if value.get("mean") is None:
            return None
        interval = f" [{value['low']:.3f}, {value['high']:.3f}]" if value.get("low") is not None else ""
        return f"{value['mean']:.3f}{interval}"
    return value


def read_json_file(path: Path | None) -> Any | None:
    """The JSON in ``path`` when it exists and parses, else None."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def figure_entries(folders: list[Path]) -> list[dict[str, str]]:
    """Every PNG under ``folders`` (sorted), as {"title", "name", "src" (data URI)}."""
    figures = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.png")):
            data = path.read_bytes()
            if len(data) > MAX_FIGURE_BYTES:
                continue
            figures.append(
                {
                    "title": path.stem.replace("_", " ").replace("-", " "),
                    "name": str(path.relative_to(folder)),
                    "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                }
            )
    return figures
