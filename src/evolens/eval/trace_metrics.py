"""Hallucination scores of a trace, from its generated texts and the ground truth its samples carry.

``hallucination_record(trace)`` is what ``evolens hallucination trace`` and ``evolens run`` write as
``hallucination.json``:

- ``shapes``: for shapes-world samples, CHAIR-style rates of the descriptions (``evolens.eval.shapes``),
  accuracy per question type, and POPE-style scores of the yes/no existence questions;
- ``coco``: for MSCOCO samples whose ground truth lists object categories, CHAIR_s / CHAIR_i / recall;
- ``words``: the mutation-layer analysis of faithful vs hallucinated words (``evolens.eval.association``),
  when shapes-world samples name objects;
- ``notes``: what could not be scored (AMBER needs its own annotation files: ``evolens hallucination amber``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.errors import EvolensError
from evolens.io.atomic import write_json

if TYPE_CHECKING:
    from evolens.io.trace import Trace

SCHEMA = "evolens.hallucination/1"


def _truth(value: Any) -> dict[str, Any] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    truth = json.loads(value) if isinstance(value, str) else value
    return truth if isinstance(truth, dict) else None


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _cleaned(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) if isinstance(v, float) else v for k, v in values.items()}


def shapes_section(rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any] | None:
    """Scores of (prompt, text, truth) rows from the shapes world, None when there are none."""
    from evolens.data.shapes import Scene, parse_yes_no
    from evolens.eval.pope import pope_scores
    from evolens.eval.shapes import exist_truth, score_sample, shapes_hallucination, shapes_task

    if not rows:
        return None
    scenes = [Scene.from_dict({k: v for k, v in t.items() if k != "source"}) for _, _, t in rows]
    tasks = [shapes_task(prompt) for prompt, _, _ in rows]
    described = [(text, scene) for (_, text, _), scene, task in zip(rows, scenes, tasks, strict=True)]
    described = [pair for pair, task in zip(described, tasks, strict=True) if task == "describe"]
    section: dict[str, Any] = {"n_samples": len(rows)}
    if described:
        result = shapes_hallucination([t for t, _ in described], [s for _, s in described])
        section["descriptions"] = _cleaned(result.to_dict())
    correct: dict[str, list[float]] = defaultdict(list)
    predicted, labels = [], []
    for (prompt, text, _), scene, task in zip(rows, scenes, tasks, strict=True):
        if task in ("describe", "other"):
            continue
        score = score_sample(prompt, text, scene)
        if math.isfinite(score.correct):
            correct[task].append(score.correct)
        if task == "exist":  # an answer that says neither yes nor no counts as "no"
            predicted.append(parse_yes_no(text) is True)
            labels.append(exist_truth(prompt, scene))
    section["accuracy"] = {task: {"accuracy": sum(v) / len(v), "n": len(v)} for task, v in correct.items()}
    if labels:
        section["pope"] = _cleaned(pope_scores(predicted, labels).to_dict())
    return section


def coco_section(rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any] | None:
    """CHAIR of (prompt, text, truth) rows whose MSCOCO ground truth lists object categories."""
    from evolens.eval.chair import CocoSynonyms, caption_objects, chair

    usable = [(text, truth) for _, text, truth in rows if "objects" in truth]
    if not usable:
        return None
    synonyms = CocoSynonyms.load()
    objects: dict[int, set[str]] = {}
    captions = []
    for index, (text, truth) in enumerate(usable):
        found = {synonyms.category_of.get(name, name) for name in truth["objects"]}
        for reference in truth.get("captions", []):
            found |= {m.category for m in caption_objects(reference, synonyms)}
        objects[index] = found
        captions.append((index, text))
    return chair(captions, objects, synonyms).to_dict()


def hallucination_record(trace: Trace, n_boot: int = 1000) -> dict[str, Any]:
    """Every score the trace's ground truth allows (see the module docstring), JSON-ready."""
    by_source: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for sample in trace.samples.itertuples(index=False):
        truth = _truth(getattr(sample, "ground_truth", None))
        if truth is not None:
            by_source[str(truth.get("source"))].append((sample.prompt, sample.text, truth))
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "trace": str(trace.directory),
        "model": trace.meta.get("model"),
        "n_samples": len(trace.samples),
        "shapes": shapes_section(by_source.get("shapes", [])),
        "coco": coco_section(by_source.get("coco", [])),
        "words": None,
        "notes": [],
    }
    if by_source.get("amber"):
        record["notes"].append("AMBER samples: score them with `evolens hallucination amber` (AMBER's files)")
    if not by_source:
        record["notes"].append("no sample carries ground truth: nothing to score")
    if by_source.get("shapes"):
        from evolens.analysis import detect_stages
        from evolens.eval.association import association_report

        try:
            record["words"] = association_report(trace, detect_stages(trace), n_boot)
        except EvolensError as exc:
            record["notes"].append(f"word analysis: {exc}")
    return record


def write_hallucination(trace_dir: str | Path, out_dir: str | Path, n_boot: int = 1000) -> dict[str, Any]:
    """Score the trace in ``trace_dir``: ``out_dir/hallucination.json`` (and ``words.png/svg``)."""
    from evolens.analysis import load_trace
    from evolens.eval.plots import word_curves_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = hallucination_record(load_trace(trace_dir), n_boot)
    write_json(out / "hallucination.json", record)
    if record["words"] is not None:
        word_curves_figure(record["words"], out / "words")
    return record
