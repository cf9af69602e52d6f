"""``evolens compare``: traces side by side, per-layer statistics and stages of each, one overlaid figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evolens.analysis.distribution import layer_statistics, statistics_to_dict
from evolens.analysis.stages import StageConfig, detect_stages
from evolens.errors import UsageError
from evolens.io.atomic import write_json
from evolens.io.trace import load_trace
from evolens.plots.layer_curves import plot_comparison
from evolens.plots.style import save_figure

COMPARED = ("jsd_next", "prob", "entropy", "kl_last")


def compare_traces(
    trace_dirs: Sequence[str | Path],
    labels: Sequence[str] | None,
    out_dir: str | Path,
    group: str = "all",
    n_boot: int = 1000,
    seed: int = 0,
    config: StageConfig | None = None,
) -> dict:
    """Write ``compare.png``/``.svg`` and ``compare.json`` into ``out_dir``; return the JSON content.

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
                "n_samples": len(trace.samples),
                "n_tokens": trace.n_tokens,
                **stages.to_dict(),
                "distribution": {
                    metric: {"layers": stats[metric]["layers"], group: stats[metric][group]}
                    for metric in COMPARED
                },
            }
        )
    figures = save_figure(plot_comparison(entries, COMPARED, group=group), out, "compare")
    result = {
        "group": group,
        "n_boot": n_boot,
        "seed": seed,
        "traces": records,
        "figures": [p.name for p in figures],
    }
    write_json(out / "compare.json", result)
    return result
