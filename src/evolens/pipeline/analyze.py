"""``analyze``: every analysis of a trace directory, written as figures (PNG + SVG) and summary.json.

trace -> stages (dataset, per token, intervals, stability) -> per-layer statistics -> single-token
figures -> feature maps -> summary.json. Nothing here needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evolens.analysis import features as feat
from evolens.analysis.distribution import layer_statistics, statistics_to_dict
from evolens.analysis.features import Answer
from evolens.analysis.single_token import candidate_curves, find_step, heatmap_data, lens_grid
from evolens.analysis.stage_stats import (
    per_token_overview,
    per_token_stages,
    stage_intervals,
    threshold_stability,
)
from evolens.analysis.stages import StageConfig, StageResult, detect_stages
from evolens.analysis.summary import build_summary
from evolens.analysis.vocabulary import TokenStrings
from evolens.errors import UsageError
from evolens.io.atomic import write_json
from evolens.io.store import file_stem, hidden_path
from evolens.io.trace import Trace, load_trace
from evolens.plots.features import plot_feature_map, plot_separation
from evolens.plots.heatmap import plot_heatmap
from evolens.plots.layer_curves import plot_layer_statistics
from evolens.plots.lens_grid import plot_lens_grid
from evolens.plots.style import save_figure, visible_token
from evolens.plots.token_probs import plot_token_probabilities


@dataclass
class AnalyzeOptions:
    """What ``analyze`` draws and how.

    Attributes:
        samples: samples that get single-token figures; None = the first sample.
        steps: (first, last) generated steps for the heatmap and the lens grid; None = all, in pages.
        metric: heatmap metric, "jsd_next" or "paper_js" (the paper's figure: raw lens, its formula,
            per-layer scaling).
        normalization: heatmap colours, "none" (comparable across layers) or "per-layer".
        tokens: tokens (step index or text) that get the probability chart; empty = picked automatically
            (the first content word and the token whose late-layer rival came closest).
        rows_per_page / steps_per_page: page sizes of the heatmap and of the lens grid.
        answer: for the many-images feature map, the answer step: "auto" (first content word), a step
            index, or the answer words.
        projections: "tsne" and/or "pca".
        max_feature_steps: at most this many steps of a sample in its feature map (t-SNE cost grows
            with the square of the points: 100 steps x 30 layers take about a minute on one core).
        max_answer_images: at most this many images (the first ones) in a many-images map.
        figures: draw figures at all (False: summary.json only).
        features: draw feature maps when hidden states are stored.
        n_boot, seed: bootstrap replicates and seed.
        stage_config: the stage detector's parameters.
    """

    samples: list[str] | None = None
    steps: tuple[int, int] | None = None
    metric: str = "jsd_next"
    normalization: str = "none"
    tokens: list[str] = field(default_factory=list)
    rows_per_page: int = 40
    steps_per_page: int = 20
    answer: Answer = "auto"
    projections: tuple[str, ...] = ("tsne", "pca")
    max_feature_steps: int = 100
    max_answer_images: int = 24
    figures: bool = True
    features: bool = True
    n_boot: int = 1000
    seed: int = 0
    stage_config: StageConfig = field(default_factory=StageConfig)


@dataclass
class AnalysisResult:
    """What ``analyze`` wrote: ``summary`` is the content of ``out_dir/summary.json``."""

    out_dir: Path
    summary: dict
    stages: StageResult
    figures: list[Path]
    notes: list[str]


def analyze(
    trace_dir: str | Path, out_dir: str | Path | None = None, options: AnalyzeOptions | None = None
) -> AnalysisResult:
    """Run every analysis on the trace in ``trace_dir``; write into ``out_dir`` (default TRACE/analysis)."""
    options = options or AnalyzeOptions()
    trace = load_trace(trace_dir)
    out = Path(out_dir) if out_dir is not None else trace.directory / "analysis"
    samples = options.samples or trace.sample_ids[:1]
    for sample_id in samples:  # bad samples, steps, metric or normalisation fail here, before any work
        heatmap_data(trace, sample_id, options.metric, options.normalization, options.steps)  # type: ignore[arg-type]
    chosen_rows = {s: [find_step(trace, s, token) for token in options.tokens] for s in samples}
    config = options.stage_config
    stages = detect_stages(trace, config)
    tokens = per_token_stages(trace, config)
    statistics = statistics_to_dict(layer_statistics(trace, n_boot=options.n_boot, seed=options.seed), trace)
    figures: list[Path] = []
    notes: list[str] = []
    features_info: dict = {}
    if options.figures:
        figures += save_figure(plot_layer_statistics(statistics, stages), out, "layer_curves")
        strings = TokenStrings(trace)
        for sample_id in samples:
            rows = chosen_rows[sample_id] or _interesting_rows(trace, sample_id, tokens)
            figures += _single_token_figures(trace, sample_id, rows, stages, options, strings, out)
        if options.features:
            features_info = _feature_figures(trace, samples, stages, options, out, figures, notes)
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
        features=features_info,
        figures=[str(p.relative_to(out)) for p in figures],
    )
    for key in ("critical_layer", "critical_layer_prob", "mutation_layer"):
        low, high = intervals[key]["low"], intervals[key]["high"]
        summary[f"{key}_ci"] = None if low is None else [low, high]
    summary["notes"] = notes
    write_json(out / "summary.json", summary)
    return AnalysisResult(out, summary, stages, figures, notes)


def _single_token_figures(
    trace: Trace,
    sample_id: str,
    rows: list[int],
    stages: StageResult,
    options: AnalyzeOptions,
    strings: TokenStrings,
    out: Path,
) -> list[Path]:
    name = file_stem(sample_id)
    written: list[Path] = []
    heatmap = heatmap_data(trace, sample_id, options.metric, options.normalization, options.steps)  # type: ignore[arg-type]
    pages = heatmap.pages(options.rows_per_page)
    for index, page in enumerate(pages):
        suffix = f"_p{index + 1}" if len(pages) > 1 else ""
        written += save_figure(plot_heatmap(page, stages), out, f"heatmap_{name}{suffix}")
    grid_pages = lens_grid(trace, sample_id, options.steps, strings).pages(options.steps_per_page)
    for index, grid_page in enumerate(grid_pages):
        suffix = f"_p{index + 1}" if len(grid_pages) > 1 else ""
        written += save_figure(plot_lens_grid(grid_page, stages), out, f"lens_grid_{name}{suffix}")
    late_from = max(stages.critical_layer or 0, trace.n_layers // 2)
    for row in rows:
        curves = candidate_curves(trace, row, late_from=late_from, strings=strings)
        figure = plot_token_probabilities(curves, stages)
        written += save_figure(figure, out, f"token_probs_{name}_step{curves.step}")
    return written


def _interesting_rows(trace: Trace, sample_id: str, tokens: pd.DataFrame) -> list[int]:
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


def _feature_figures(
    trace: Trace,
    samples: list[str],
    stages: StageResult,
    options: AnalyzeOptions,
    out: Path,
    figures: list[Path],
    notes: list[str],
) -> dict:
    """Feature maps (a) per chosen sample and (b) per prompt asked of several images; their JSON files."""
    info: dict = {"single": {}, "answer": []}
    with_hidden = [s for s in trace.sample_ids if hidden_path(trace.directory, s).exists()]
    if not with_hidden:
        notes.append("no hidden states stored (trace with --keep-hidden): feature maps skipped")
        return info
    if not options.projections:
        notes.append(
            "hidden states are stored but no projection was asked (analyze.projections, --projection "
            "tsne/pca): no feature maps, only the separation by image per layer"
        )
    for sample_id in [s for s in samples if s in with_hidden]:
        points = feat.single_sample_points(trace, sample_id, max_steps=options.max_feature_steps)
        for method in options.projections:
            projection = feat.project_2d(points.states, method, options.seed)  # type: ignore[arg-type]
            name = f"features_{file_stem(sample_id)}_{method}"
            title = f"{sample_id}: every generated token, layers 1-{trace.n_layers}"
            figure = plot_feature_map(
                projection.xy, points.rows, stages, method, title=title, explained=projection.explained
            )
            figures += save_figure(figure, out, name)
            write_json(
                out / "features" / f"{name}.json",
                _view(projection, points.rows, stages, method, title, group="token"),
            )
            info["single"].setdefault(sample_id, []).append(f"features/{name}.json")
    groups: dict[str, list[str]] = {}
    for sample_id in with_hidden:
        groups.setdefault(trace.prompt_of(sample_id), []).append(sample_id)
    for index, (prompt, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        if len(members) < 3:
            notes.append(
                f"prompt '{prompt}': no many-images map ({len(members)} with hidden states, 3 needed)"
            )
            continue
        used = members[: options.max_answer_images]
        if len(used) < len(members):
            notes.append(
                f"prompt '{prompt}': the many-images map uses the first {len(used)} of {len(members)} images "
                "(max_answer_images; raise it with --max-answer-images or analyze.max_answer_images)"
            )
        try:
            points = feat.answer_points(trace, used, options.answer)
        except UsageError as exc:
            notes.append(f"prompt '{prompt}': {exc}")
            continue
        answered = set(points.rows["sample_id"])
        unanswered = [sample_id for sample_id in used if sample_id not in answered]
        if unanswered:
            listed = ", ".join(unanswered[:5]) + (", ..." if len(unanswered) > 5 else "")
            notes.append(
                f"prompt '{prompt}': {len(unanswered)} of {len(used)} images never gave the answer "
                f"({options.answer!r}) and are left out of the many-images map: {listed}"
            )
        separation = feat.separation_by_layer(points)
        tag = f"answer_{index + 1}"
        rows = points.rows.assign(group=points.rows["sample_id"].map(sample_groups(trace)))
        n_images = rows["sample_id"].nunique()
        title = f"'{prompt}': {n_images} images at the answer step ({answer_words(rows)})"
        for method in options.projections:
            projection = feat.project_2d(points.states, method, options.seed)  # type: ignore[arg-type]
            figure = plot_feature_map(
                projection.xy,
                rows,
                stages,
                method,
                by_sample=True,
                title=title,
                explained=projection.explained,
            )
            figures += save_figure(figure, out, f"features_{tag}_{method}")
            write_json(
                out / "features" / f"features_{tag}_{method}.json",
                _view(projection, rows, stages, method, title, group="sample_id"),
            )
        figures += save_figure(
            plot_separation(separation, stages, title=f"'{prompt}': separation by image per layer"),
            out,
            f"features_{tag}_separation",
        )
        info["answer"].append(
            {
                "prompt": prompt,
                "samples": list(points.rows["sample_id"].unique()),
                "answers": sorted(points.rows["answer"].unique()),
                "separation": separation.to_dict("list"),
            }
        )
    return info


def sample_groups(trace: Trace) -> dict[str, str | None]:
    """Each sample's ``group`` label (e.g. its class subfolder); None where it has none."""
    if "group" not in trace.samples:
        return dict.fromkeys(trace.sample_ids)
    return {
        str(s): None if pd.isna(g) else str(g)
        for s, g in zip(trace.samples["sample_id"], trace.samples["group"], strict=True)
    }


def answer_words(rows: pd.DataFrame, at_most: int = 6) -> str:
    """The answer words of a many-images map, most frequent first: "answers: red x3, blue x2"."""
    counts = rows.drop_duplicates("sample_id")["answer"].value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    shown = ", ".join(f"'{word}' x{count}" for word, count in ordered[:at_most])
    more = f", {len(ordered) - at_most} more" if len(ordered) > at_most else ""
    return f"answers: {shown}{more}"


def _view(
    projection: feat.Projection, rows: pd.DataFrame, stages: StageResult, method: str, title: str, group: str
) -> dict:
    """The 2-D coordinates as a view for the interactive report: parallel lists, one entry per point
    (``sample_group``: the samples' group labels, when any sample carries one)."""
    xy = projection.xy
    view = {
        "title": title,
        "method": method,
        "explained": None if projection.explained is None else [round(v, 6) for v in projection.explained],
        "x": np.round(xy[:, 0], 4).tolist(),
        "y": np.round(xy[:, 1], 4).tolist(),
        "layer": rows["layer"].astype(int).tolist(),
        "stage": [stages.stage_of(int(layer)) for layer in rows["layer"]],
        "group": rows[group].astype(str).tolist(),
        "sample_id": rows["sample_id"].astype(str).tolist(),
        "step": rows["step"].astype(int).tolist(),
        "text": [
            f"{s} step {st} '{visible_token(t)}' layer {la}"
            for s, st, t, la in zip(
                rows["sample_id"], rows["step"], rows["token"], rows["layer"], strict=True
            )
        ],
    }
    if "answer" in rows:
        view["answer"] = rows["answer"].astype(str).tolist()
    if "group" in rows and rows["group"].notna().any():
        view["sample_group"] = [None if pd.isna(g) else str(g) for g in rows["group"]]
    return view
