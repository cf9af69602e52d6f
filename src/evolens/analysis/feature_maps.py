"""The feature maps of ``analyze``: (a) one map per chosen sample, (b) one many-images map per prompt asked
of at least three images, each with its view for the report (``features/<figure>.json``) and the figures
to draw; plus the notes on what was skipped, capped or left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evolens.analysis import features as feat
from evolens.analysis.options import AnalyzeOptions
from evolens.analysis.stages import StageResult
from evolens.analysis.views import FeatureMap, FigureSpec, Separation
from evolens.errors import UsageError
from evolens.io.store import file_stem, hidden_path
from evolens.io.trace import Trace
from evolens.vocabulary import visible_token

MIN_ANSWER_IMAGES = 3


@dataclass
class FeatureMaps:
    """What the feature maps add to an analysis.

    Attributes:
        info: summary.json's ``features``: {"single": {sample_id: [view files]}, "answer": [{"prompt",
            "samples", "answers", "separation"}]}; {} when feature maps were not asked for.
        figures: the maps and separation curves to draw, in order.
        views: file relative to the output folder ("features/<figure>.json") -> the report's view.
        notes: what was skipped, capped or left out, one sentence each.
    """

    info: dict[str, Any] = field(default_factory=dict)
    figures: list[FigureSpec] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def feature_maps(
    trace: Trace, samples: list[str], stages: StageResult, options: AnalyzeOptions
) -> FeatureMaps:
    """Feature maps (a) per chosen sample and (b) per prompt asked of several images, from the hidden
    states the trace stored (t-SNE and/or PCA: ``options.projections``)."""
    maps = FeatureMaps(info={"single": {}, "answer": []})
    with_hidden = [s for s in trace.sample_ids if hidden_path(trace.directory, s).exists()]
    if not with_hidden:
        maps.notes.append("no hidden states stored (trace with --keep-hidden): feature maps skipped")
        return maps
    if not options.projections:
        maps.notes.append(
            "hidden states are stored but no projection was asked (analyze.projections, --projection "
            "tsne/pca): no feature maps, only the separation by image per layer"
        )
    for sample_id in [s for s in samples if s in with_hidden]:
        _single_sample_maps(trace, sample_id, stages, options, maps)
    groups: dict[str, list[str]] = {}
    for sample_id in with_hidden:
        groups.setdefault(trace.prompt_of(sample_id), []).append(sample_id)
    for index, (prompt, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        _answer_maps(trace, f"answer_{index + 1}", prompt, members, stages, options, maps)
    return maps


def _single_sample_maps(
    trace: Trace, sample_id: str, stages: StageResult, options: AnalyzeOptions, maps: FeatureMaps
) -> None:
    """(a): every generated token of one sample (its first ``max_feature_steps``) at layers 1..L."""
    points = feat.single_sample_points(trace, sample_id, max_steps=options.max_feature_steps)
    for method in options.projections:
        projection = feat.project_2d(points.states, method, options.seed)  # type: ignore[arg-type]
        name = f"features_{file_stem(sample_id)}_{method}"
        title = f"{sample_id}: every generated token, layers 1-{trace.n_layers}"
        maps.figures.append(FigureSpec(name, FeatureMap(projection, points.rows, method, title)))
        maps.views[f"features/{name}.json"] = feature_view(
            projection, points.rows, stages, method, title, group="token"
        )
        maps.info["single"].setdefault(sample_id, []).append(f"features/{name}.json")


def _answer_maps(
    trace: Trace,
    tag: str,
    prompt: str,
    members: list[str],
    stages: StageResult,
    options: AnalyzeOptions,
    maps: FeatureMaps,
) -> None:
    """(b): the state of every image asked ``prompt`` at its answer step, at layers 1..L, and how well the
    images separate per layer."""
    if len(members) < MIN_ANSWER_IMAGES:
        maps.notes.append(
            f"prompt '{prompt}': no many-images map ({len(members)} with hidden states, "
            f"{MIN_ANSWER_IMAGES} needed)"
        )
        return
    used = members[: options.max_answer_images]
    if len(used) < len(members):
        maps.notes.append(
            f"prompt '{prompt}': the many-images map uses the first {len(used)} of {len(members)} images "
            "(max_answer_images; raise it with --max-answer-images or analyze.max_answer_images)"
        )
    try:
        points = feat.answer_points(trace, used, options.answer)
    except UsageError as exc:
        maps.notes.append(f"prompt '{prompt}': {exc}")
        return
    answered = set(points.rows["sample_id"])
    unanswered = [sample_id for sample_id in used if sample_id not in answered]
    if unanswered:
        listed = ", ".join(unanswered[:5]) + (", ..." if len(unanswered) > 5 else "")
        maps.notes.append(
            f"prompt '{prompt}': {len(unanswered)} of {len(used)} images never gave the answer "
            f"({options.answer!r}) and are left out of the many-images map: {listed}"
        )
    separation = feat.separation_by_layer(points)
    rows = points.rows.assign(group=points.rows["sample_id"].map(sample_groups(trace)))
    n_images = rows["sample_id"].nunique()
    title = f"'{prompt}': {n_images} images at the answer step ({answer_words(rows)})"
    for method in options.projections:
        projection = feat.project_2d(points.states, method, options.seed)  # type: ignore[arg-type]
        name = f"features_{tag}_{method}"
        maps.figures.append(FigureSpec(name, FeatureMap(projection, rows, method, title, by_sample=True)))
        maps.views[f"features/{name}.json"] = feature_view(
            projection, rows, stages, method, title, group="sample_id"
        )
    maps.figures.append(
        FigureSpec(
            f"features_{tag}_separation",
            Separation(separation, f"'{prompt}': separation by image per layer"),
        )
    )
    maps.info["answer"].append(
        {
            "prompt": prompt,
            "samples": list(points.rows["sample_id"].unique()),
            "answers": sorted(points.rows["answer"].unique()),
            "separation": separation.to_dict("list"),
        }
    )


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


def feature_view(
    projection: feat.Projection, rows: pd.DataFrame, stages: StageResult, method: str, title: str, group: str
) -> dict[str, Any]:
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
