"""``analyze``: every analysis of a trace directory, written as summary.json, feature views and figures.

Orchestration only: compute (``evolens.analysis.results.analyze_trace``, no matplotlib) -> write the feature
views and summary.json -> draw the figures (``evolens.plots.draw``). Nothing here needs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolens.analysis.image_effect import nulls_by_condition
from evolens.analysis.options import AnalyzeOptions
from evolens.analysis.results import analyze_trace
from evolens.analysis.stages import StageResult
from evolens.io.atomic import write_json
from evolens.io.trace import load_trace
from evolens.plots.draw import draw_figures

__all__ = ["AnalysisResult", "AnalyzeOptions", "analyze"]


@dataclass
class AnalysisResult:
    """What ``analyze`` wrote: ``summary`` is the content of ``out_dir/summary.json``."""

    out_dir: Path
    summary: dict[str, Any]
    stages: StageResult
    figures: list[Path]
    notes: list[str]


def analyze(
    trace_dir: str | Path,
    out_dir: str | Path | None = None,
    options: AnalyzeOptions | None = None,
    nulls: Sequence[str | Path] = (),
) -> AnalysisResult:
    """Run every analysis on the trace in ``trace_dir``; write into ``out_dir`` (default TRACE/analysis).

    ``nulls``: folders of the trace's own tokens scored under null conditions (``evolens score --from``),
    each keyed by the condition its meta.json records."""
    trace = load_trace(trace_dir)
    null_traces = nulls_by_condition([load_trace(directory) for directory in nulls])
    out = Path(out_dir) if out_dir is not None else trace.directory / "analysis"
    results = analyze_trace(trace, options, null_traces or None)
    for relative, view in results.views.items():
        write_json(out / relative, view)
    write_json(out / "summary.json", results.summary)
    figures = draw_figures(results.figures, results.stages, out)
    return AnalysisResult(out, results.summary, results.stages, figures, results.notes)
