"""``evolens compare``: traces side by side, per-layer statistics and stages of each, one overlaid figure.

Traces of the same inputs read with different lenses (``--lens normed`` and ``--lens tuned``) are the lens
comparison: ``same_inputs`` says whether every trace holds the same samples and generated tokens, each
trace's critical and mutation layers come with cluster-bootstrap intervals (``stage_intervals``), and
``kl_to_final.png`` draws KL(last layer || layer) per layer of every trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evolens.analysis.distribution import layer_statistics, statistics_to_dict
from evolens.analysis.stage_stats import stage_intervals
from evolens.analysis.stages import StageConfig, detect_stages
from evolens.errors import UsageError
from evolens.io.atomic import write_json
from evolens.io.trace import Trace, load_trace
from evolens.plots.layer_curves import plot_comparison, plot_kl_to_final
from evolens.plots.style import save_figure
from evolens.vocabulary import OVERVIEW

COMPARED = OVERVIEW
"""The curves compared: the report's overview curves (``evolens.vocabulary.OVERVIEW``)."""


def compare_traces(
    trace_dirs: Sequence[str | Path],
    labels: Sequence[str] | None,
    out_dir: str | Path,
    group: str = "all",
    n_boot: int = 1000,
    seed: int = 0,
    config: StageConfig | None = None,
) -> dict:
    """Write ``compare.png``, ``kl_to_final.png`` (and .svg) and ``compare.json`` into ``out_dir``; return
    the JSON content.

    ``group`` picks the tokens averaged: "all" or a token kind (content, function, copied).
    """
    out = Path(out_dir)
    traces = [load_trace(d) for d in trace_dirs]
    labels = list(labels) if labels else [t.label for t in traces]
    entries, records = [], []
    for label, trace in zip(labels, traces, strict=True):
        stats = statistics_to_dict(layer_statistics(trace, n_boot=n_boot, seed=seed, metrics=COMPARED), trace)
        if group not in stats["prob"]:
            raise UsageError(f"{trace.directory}: no '{group}' tokens to compare")
        stages = detect_stages(trace, config)
        entries.append((label, stats, stages))
        records.append(
            {
                "label": label,
                "directory": str(trace.directory),
                "model": trace.meta.get("model"),
                "lens": trace.meta.get("lens"),
                "lens_sha256": trace.meta.get("lens_sha256"),
                "n_samples": len(trace.samples),
                "n_tokens": trace.n_tokens,
                **stages.to_dict(),
                "intervals": stage_intervals(trace, config or StageConfig(), n_boot=n_boot, seed=seed),
                "distribution": {
                    metric: {"layers": stats[metric]["layers"], group: stats[metric][group]}
                    for metric in COMPARED
                },
            }
        )
    figures = save_figure(plot_comparison(entries, COMPARED, group=group), out, "compare")
    kl_entries = [(label, stats["kl_last"]) for label, stats, _ in entries]
    if len({len(entry["layers"]) for _, entry in kl_entries}) == 1:  # one depth: layers line up
        figures += save_figure(plot_kl_to_final(kl_entries, group=group), out, "kl_to_final")
    result = {
        "group": group,
        "n_boot": n_boot,
        "seed": seed,
        "same_inputs": same_inputs(traces),
        "stages": stage_table(records),
        "traces": records,
        "figures": [p.name for p in figures],
    }
    write_json(out / "compare.json", result)
    return result


def same_inputs(traces: Sequence[Trace]) -> bool:
    """Whether every trace holds the same samples (id, image, prompt) with the same generated tokens."""

    def key(trace: Trace) -> list[tuple]:
        frame = trace.samples.sort_values("sample_id")
        return [
            (row.sample_id, row.image, row.prompt, tuple(row.token_ids))
            for row in frame[["sample_id", "image", "prompt", "token_ids"]].itertuples(index=False)
        ]

    first = key(traces[0])
    return all(key(trace) == first for trace in traces[1:])


def stage_table(records: Sequence[dict]) -> list[dict]:
    """One row per trace: lens, critical layers and first mutation layer, each with its bootstrap interval."""
    rows = []
    for record in records:
        row: dict = {"label": record["label"], "lens": record["lens"]}
        for key in ("critical_layer", "critical_layer_prob", "mutation_layer"):
            interval = record["intervals"][key]
            row[key] = interval["estimate"]
            row[f"{key}_ci"] = _interval_text(interval)
        row["stages"] = ", ".join(f"{s['name']} {s['start']}-{s['end']}" for s in record["stages"])
        rows.append(row)
    return rows


def _interval_text(interval: dict) -> str | None:
    if interval["low"] is None:
        return None
    found = "" if interval["found"] == 1 else f" (found in {interval['found']:.0%})"
    return f"[{interval['low']:g}, {interval['high']:g}]{found}"
