"""Writing the skipping experiment: ``skip.json`` (schema in docs/interventions.md), a table, a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table

from evolens.analysis.stages import format_layers
from evolens.data.resolve import Sample
from evolens.interventions.experiments import ConditionSummary
from evolens.io.atomic import write_json
from evolens.plots.style import figure_style, save_figure

SCHEMA = "evolens.skip/1"


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def skip_record(
    summaries: Sequence[ConditionSummary],
    samples: Sequence[Sample],
    settings: dict[str, Any],
    stages: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable content of ``skip.json``."""
    conditions = []
    for summary in summaries:
        generation = summary.generation
        per_sample = [
            {
                "sample_id": sample.sample_id,
                "text": text,
                "n_tokens": len(ids),
                "token_agreement": _number(agreement),
                "edit_distance": _number(edit),
                "correct": _number(correct),
                "n_mentions": int(mentions),
                "n_hallucinated": int(hallucinated),
            }
            for sample, text, ids, agreement, edit, correct, mentions, hallucinated in zip(
                samples,
                generation.texts,
                generation.token_ids,
                summary.agreement,
                summary.edit,
                summary.correct,
                summary.mentions,
                summary.hallucinated,
                strict=True,
            )
        ]
        conditions.append(
            {
                **generation.condition.to_dict(),
                "wall_time_s": _number(generation.wall_time_s),
                "n_generated_tokens": generation.n_tokens,
                "speedup": _number(summary.speedup),
                "speedup_per_token": _number(summary.speedup_per_token),
                **summary.aggregates,
                "samples": per_sample,
            }
        )
    return {"schema": SCHEMA, **settings, "stages": stages, "conditions": conditions}


def write_skip_outputs(
    out: Path,
    summaries: Sequence[ConditionSummary],
    samples: Sequence[Sample],
    settings: dict[str, Any],
    stages: dict[str, Any] | None = None,
    stem: str = "skip",
) -> dict[str, Any]:
    """Write ``out/<stem>.json`` and ``out/<stem>.png`` / ``.svg``; returns the record."""
    out.mkdir(parents=True, exist_ok=True)
    record = skip_record(summaries, samples, settings, stages)
    write_skip_json(out / f"{stem}.json", record)
    skip_figure(record, out / stem)
    return record


def write_skip_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file renamed into place)."""
    write_json(path, record)


def _interval(stat: dict[str, Any], percent: bool = True) -> str:
    if stat.get("mean") is None:
        return "-"
    scale = 100 if percent else 1
    return f"{stat['mean'] * scale:.1f} [{stat['low'] * scale:.1f}, {stat['high'] * scale:.1f}]"


def skip_table(record: dict[str, Any], title: str = "evolens skip") -> Table:
    """One row per condition: layers skipped, agreement, edit distance, accuracy, hallucination, speed-up."""
    table = Table(title=title)
    columns = (
        "condition",
        "skipped",
        "agree %",
        "edit %",
        "accuracy %",
        "CHAIR_i %",
        "CHAIR_s %",
        "speed-up",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("condition", "skipped") else "right")
    for c in record["conditions"]:
        table.add_row(
            c["name"],
            format_layers(c["skipped"]) or "-",
            _interval(c["token_agreement"]),
            _interval(c["edit_distance"]),
            _interval(c["accuracy"]),
            _interval(c["chair_i"]),
            _interval(c["chair_s"]),
            f"{c['speedup_per_token']:.2f}x" if c["speedup_per_token"] is not None else "-",
        )
    return table


def _random_spread(conditions: list[dict[str, Any]], name: str, key: str) -> list[float]:
    return [c[key]["mean"] for c in conditions if c["control_of"] == name and c[key]["mean"] is not None]


def skip_figure(record: dict[str, Any], out_stem: Path) -> list[Path]:
    """Bars per non-random condition (token agreement, CHAIR_i, per-token speed-up) with random controls
    as dots; written as PNG and SVG next to ``out_stem``."""
    with figure_style():
        figure = _skip_bars(record)
    return save_figure(figure, out_stem.parent, out_stem.name)


def _skip_bars(record: dict[str, Any]) -> Figure:
    conditions = record["conditions"]
    main = [c for c in conditions if c["kind"] != "random"]
    panels = (
        ("token_agreement", "token agreement with baseline"),
        ("chair_i", "CHAIR_i (hallucinated mentions)"),
    )
    figure = Figure(figsize=(13, 3.8), layout="tight")
    axes = figure.subplots(1, 3)
    x = np.arange(len(main))
    for axis, (key, label) in zip(axes[:2], panels, strict=True):
        means = [c[key]["mean"] if c[key]["mean"] is not None else np.nan for c in main]
        low = [
            m - c[key]["low"] if c[key]["mean"] is not None else 0 for m, c in zip(means, main, strict=True)
        ]
        high = [
            c[key]["high"] - m if c[key]["mean"] is not None else 0 for m, c in zip(means, main, strict=True)
        ]
        axis.bar(x, means, yerr=[low, high], color="#4c72b0", capsize=3, label="condition (95% CI)")
        for i, c in enumerate(main):
            spread = _random_spread(conditions, c["name"], key)
            axis.scatter([i + 0.25] * len(spread), spread, color="#dd8452", s=14, zorder=3)
        if all(np.isnan(means)):
            axis.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(label)
        axis.set_ylim(0, 1.05)
    speed = [c["speedup_per_token"] or np.nan for c in main]
    axes[2].bar(x, speed, color="#55a868")
    axes[2].axhline(1.0, color="gray", lw=0.8)
    axes[2].set_title("speed-up per generated token")
    for axis in axes:
        axis.set_xticks(x, [c["name"] for c in main], rotation=25, ha="right", fontsize=8)
    axes[0].scatter([], [], color="#dd8452", s=14, label="random layers, same count")
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle(f"Layer skipping on {record.get('model', '?')} (n = {record.get('n_samples', '?')})")
    return figure
