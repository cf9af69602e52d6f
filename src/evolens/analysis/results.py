"""Every analysis of a trace, computed and not yet written: summary.json's content, the report's feature
views, and the figures to draw (``evolens.plots.draw`` draws them; ``evolens.pipeline.analyze`` writes it
all).

trace -> stages (dataset, per token, intervals, stability) -> per-layer statistics -> token strings ->
single-token views -> feature maps -> summary. Nothing here draws or needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evolens.analysis.distribution import layer_statistics, statistics_to_dict, trace_metrics
from evolens.analysis.feature_maps import FeatureMaps, feature_maps
from evolens.analysis.image_effect import ImageEffectCurves, effect_notes, image_effect
from evolens.analysis.localisation import image_side
from evolens.analysis.options import AnalyzeOptions
from evolens.analysis.probes import ProbeCurves, probes
from evolens.analysis.single_token import (
    HeatmapData,
    candidate_curves,
    find_step,
    heatmap_data,
    lens_grid,
)
from evolens.analysis.stage_search_summary import found_stages, legacy_fields, stages_summary
from evolens.analysis.stage_stats import (
    per_token_overview,
    per_token_stages,
    stage_intervals,
    threshold_stability,
)
from evolens.analysis.stages import StageResult, detect_stages
from evolens.analysis.summary import build_summary
from evolens.analysis.token_strings import TokenStrings
from evolens.analysis.views import FigureSpec, LayerCurves
from evolens.io.store import file_stem
from evolens.io.trace import Trace

KEY_LAYERS = ("critical_layer", "critical_layer_prob", "mutation_layer")
"""The key layers whose bootstrap interval summary.json also gives as ``<key>_ci`` = [low, high]."""


@dataclass
class AnalysisResults:
    """What ``analyze_trace`` computed.

    Attributes:
        summary: summary.json's content (schema in docs/analysis.md).
        stages: the dataset's stages.
        figures: the figures to draw, in the order summary.json lists them.
        views: file relative to the output folder ("features/<figure>.json") -> the report's view.
        notes: what was skipped, capped or left out (also summary.json's ``notes``).
    """

    summary: dict[str, Any]
    stages: StageResult
    figures: list[FigureSpec]
    views: dict[str, dict[str, Any]]
    notes: list[str]


def analyze_trace(
    trace: Trace, options: AnalyzeOptions | None = None, nulls: dict[str, Trace] | None = None
) -> AnalysisResults:
    """Every analysis of ``trace``; bad samples, steps, metric, normalisation or null traces fail first,
    before any work.

    ``nulls``: condition ("no-image", "blank", "shuffled") -> the trace's own tokens scored under it
    (``evolens score --from TRACE``): summary.json's ``image_effect`` compares the trace with each."""
    options = options or AnalyzeOptions()
    effect = image_effect(trace, nulls, n_boot=options.n_boot, seed=options.seed)
    samples = options.samples or trace.sample_ids[:1]
    heatmaps = {
        sample_id: heatmap_data(trace, sample_id, options.metric, options.normalization, options.steps)  # type: ignore[arg-type]
        for sample_id in samples
    }
    chosen_rows = {s: [find_step(trace, s, token) for token in options.tokens] for s in samples}
    config = options.stage_config
    stages = detect_stages(trace, config)
    tokens = per_token_stages(trace, config)
    computed = layer_statistics(trace, options.n_boot, options.seed, trace_metrics(trace))
    statistics = statistics_to_dict(computed, trace)
    strings = TokenStrings(trace)
    figures: list[FigureSpec] = []
    maps = FeatureMaps()
    if options.figures:
        figures.append(FigureSpec("layer_curves", LayerCurves(statistics)))
        for sample_id in samples:
            rows = chosen_rows[sample_id] or interesting_rows(trace, sample_id, tokens)
            figures += single_token_figures(trace, heatmaps[sample_id], rows, stages, options, strings)
        if options.features:
            maps = feature_maps(trace, samples, stages, options)
            figures += maps.figures
    intervals = stage_intervals(trace, config, n_boot=options.n_boot, seed=options.seed)
    summary = build_summary(
        trace=trace,
        stages=stages,
        config=config,
        intervals=intervals,
        stability=threshold_stability(trace, config),
        tokens=tokens,
        token_overview=per_token_overview(tokens),
        distribution=statistics,
        features=maps.info,
        figures=[file for figure in figures for file in figure.files],
        token_strings=strings.of_ids(trace.topk()[0]),
    )
    for key in KEY_LAYERS:
        low, high = intervals[key]["low"], intervals[key]["high"]
        summary[f"{key}_ci"] = None if low is None else [low, high]
    probed = probes(trace)
    findings = finding_figures(effect, probed) if options.figures else []
    figures += findings
    summary["figures"] += [file for figure in findings for file in figure.files]
    summary["image_effect"], summary["probes"] = effect, probed
    image_entries, image_figures = image_side(
        trace, samples, strings, options.n_boot, options.seed, options.figures
    )
    summary |= image_entries
    figures += image_figures
    summary["figures"] += [file for figure in image_figures for file in figure.files]
    search, _ = stages_summary(trace, nulls, n_boot=options.n_boot, seed=options.seed)
    summary |= legacy_fields(stages)
    summary["stages"], summary["stage_search"] = found_stages(search), search
    notes = [*maps.notes, *effect_notes(effect)]
    summary["notes"] = notes
    return AnalysisResults(summary, stages, figures, maps.views, notes)


def finding_figures(effect: dict, probed: dict) -> list[FigureSpec]:
    """The image effect's figure (with nulls) and the probes' (with at least one probe computed)."""
    figures = []
    if "conditions" in effect:
        figures.append(FigureSpec("image_effect", ImageEffectCurves(effect)))
    computed = [p for entry in probed.get("prompts") or [] for p in (entry.get("attributes") or {}).values()]
    if any("accuracy" in probe for probe in computed):
        figures.append(FigureSpec("probes", ProbeCurves(probed)))
    return figures


def single_token_figures(
    trace: Trace,
    heatmap: HeatmapData,
    rows: list[int],
    stages: StageResult,
    options: AnalyzeOptions,
    strings: TokenStrings,
) -> list[FigureSpec]:
    """One sample's heatmap and lens-grid pages, and the probability chart of each of ``rows`` (rows of
    ``trace.steps``)."""
    name = file_stem(heatmap.sample_id)
    figures: list[FigureSpec] = []
    pages = heatmap.pages(options.rows_per_page)
    for index, page in enumerate(pages):
        suffix = f"_p{index + 1}" if len(pages) > 1 else ""
        figures.append(FigureSpec(f"heatmap_{name}{suffix}", page))
    grid_pages = lens_grid(trace, heatmap.sample_id, options.steps, strings).pages(options.steps_per_page)
    for index, grid_page in enumerate(grid_pages):
        suffix = f"_p{index + 1}" if len(grid_pages) > 1 else ""
        figures.append(FigureSpec(f"lens_grid_{name}{suffix}", grid_page))
    late_from = max(stages.critical_layer or 0, trace.n_layers // 2)
    for row in rows:
        curves = candidate_curves(trace, row, late_from=late_from, strings=strings)
        figures.append(FigureSpec(f"token_probs_{name}_step{curves.step}", curves))
    return figures


def interesting_rows(trace: Trace, sample_id: str, tokens: pd.DataFrame) -> list[int]:
    """The first content word, and the step whose late-layer top-1 rival came closest to winning."""
    rows = trace.rows_of(sample_id)
    kinds = tokens["kind"].to_numpy()[rows]
    chosen = [int(rows[np.argmax(kinds == "content")])] if (kinds == "content").any() else [int(rows[0])]
    ids, probs = trace.topk()
    late = slice((2 * trace.n_layers) // 3, trace.n_layers)
    emitted = trace.steps["token_id"].to_numpy()[rows]
    rival = np.where(ids[rows, late, 0] != emitted[:, None], probs[rows, late, 0], 0.0).max(1)
    if rival.max() > 0:
        chosen.append(int(rows[np.argmax(rival)]))
    return list(dict.fromkeys(chosen))
