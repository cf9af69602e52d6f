"""The report's Experiments section: compact tables of ``skip.json`` and ``hallucination.json``.

An experiment becomes {"title", "source", "lines", "tables", "details"}: ``lines`` are sentences (what
was run, what could not be measured), ``tables`` the headline numbers shown open, ``details`` the full
numbers (per-sample outputs, random controls, per-layer curves) in collapsed sections. A table is
{"title", "columns", "rows"} with cells already formatted ("91.0 [85.2, 95.1]"). A JSON file of another
kind falls back to ``tables_from_json`` with every table collapsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolens.report.causal_view import causal_entry
from evolens.report.sections import tables_from_json
from evolens.vocabulary import format_layers

Table = dict[str, Any]

SKIP_METRICS = (
    ("token_agreement", "agreement %"),
    ("edit_distance", "edit distance %"),
    ("accuracy", "accuracy %"),
    ("chair_i", "CHAIR_i %"),
    ("chair_s", "CHAIR_s %"),
)
WORD_FEATURES = {
    "jsd_mutation": "max JSD over the mutation stage",
    "prob_critical": "p(word) at the critical layer",
    "overtaken": "the correct word led just before the mutation layer and was overtaken",
    "overtaken_any": "another token led just before the mutation layer",
    "prob_final": "p(word) at the output",
    "entropy_final": "entropy at the output",
}


def experiment_entry(title: str, path: Path, value: Any) -> dict[str, Any] | None:
    """The report's view of one experiment file (None when it is missing or unreadable)."""
    if value is None:
        return None
    schema = str(value.get("schema", "")) if isinstance(value, dict) else ""
    if isinstance(value, dict) and "not run" in value:
        entry = _entry(title, path, lines=[f"Not run: {value['not run']}"])
    elif schema.startswith("evolens.skip/"):
        entry = skip_entry(title, path, value)
    elif schema.startswith("evolens.hallucination/"):
        entry = hallucination_entry(title, path, value)
    elif schema.startswith("evolens.causal/"):
        entry = causal_entry(title, path, value)
    else:
        entry = _entry(title, path, lines=["No dedicated view for this file: every number, as tables."])
        entry["details"] = tables_from_json(title, value)
    return entry


def experiment_notes(value: Any) -> list[str]:
    """What the experiment recorded as not measured or left out (for the report's Notes section)."""
    if not isinstance(value, dict):
        return []
    notes = [str(note) for note in value.get("notes") or []]
    if "not run" in value:
        notes.append(f"not run: {value['not run']}")
    notes += [f"left out: {failure}" for failure in value.get("failures") or []]
    return notes


def skip_entry(title: str, path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """One row per condition (random controls summarised in a column), per-sample outputs collapsed."""
    conditions = record.get("conditions") or []
    main = [c for c in conditions if c.get("kind") != "random"]
    metrics = [(key, name) for key, name in SKIP_METRICS if any(_has_mean(c.get(key)) for c in conditions)]
    missing = [name.removesuffix(" %") for key, name in SKIP_METRICS if (key, name) not in metrics]
    seeds = record.get("random_seeds") or []
    columns = ["condition", "layers skipped", *(name for _, name in metrics), "speed-up per token"]
    if any(c.get("kind") == "random" for c in conditions):
        columns.insert(3, "agreement %, random layers")
    rows = []
    for condition in main:
        row = [condition.get("name"), _skipped(condition)]
        row += [interval_text(condition.get(key)) for key, _ in metrics]
        row.append(_speedup(condition.get("speedup_per_token")))
        if "agreement %, random layers" in columns:
            row.insert(3, _random_summary(conditions, str(condition.get("name"))))
        rows.append(row)
    lines = [
        f"{record.get('model', '?')}: {record.get('n_samples', '?')} samples, up to "
        f"{record.get('max_new_tokens', '?')} new tokens each; each condition is compared with the baseline "
        "(no layer skipped). Intervals: 95% bootstrap over samples."
    ]
    if seeds:
        lines.append(f"Random controls skip as many random layers, {len(seeds)} seeds per condition.")
    if missing:
        lines.append(f"Not measured ({', '.join(missing)}): the samples carry no ground truth for it.")
    details = [_random_table(conditions)] if any(c.get("kind") == "random" for c in conditions) else []
    if any(c.get("samples") for c in conditions):
        details.append(_outputs_table(conditions))
    entry = _entry(title, path, lines=lines)
    entry["tables"] = [{"title": "Conditions", "columns": columns, "rows": rows}]
    entry["details"] = details
    return entry


def hallucination_entry(title: str, path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The headline scores (CHAIR, accuracy, POPE, AUROCs with their intervals); word curves collapsed."""
    tables: list[Table] = []
    shapes = record.get("shapes") or {}
    if shapes.get("descriptions"):
        found = shapes["descriptions"]
        names = (
            ("chair_i", "CHAIR_i: hallucinated share of object mentions"),
            ("chair_s", "CHAIR_s: descriptions with a hallucination"),
            ("object_hallucination", "object hallucination"),
            ("attribute_hallucination", "attribute hallucination"),
            ("precision", "precision"),
            ("recall", "recall"),
        )
        rows = [[label, percent(found.get(key))] for key, label in names if key in found]
        tables.append(_metric_table(f"Descriptions (shapes world, n = {found.get('n', '?')})", rows))
    if shapes.get("accuracy"):
        rows = [[task, percent(v.get("accuracy")), v.get("n")] for task, v in shapes["accuracy"].items()]
        tables.append(
            {"title": "Question accuracy", "columns": ["question", "accuracy %", "n"], "rows": rows}
        )
    if shapes.get("pope"):
        pope = shapes["pope"]
        keys = ("accuracy", "precision", "recall", "f1", "yes_ratio")
        rows = [[key.replace("_", " "), percent(pope.get(key))] for key in keys if key in pope]
        tables.append(
            _metric_table(f"Yes/no existence questions, POPE-style (n = {pope.get('n', '?')})", rows)
        )
    if record.get("coco"):
        coco = record["coco"]
        rows = [[key.replace("_", " "), percent(coco.get(key))] for key in ("chair_s", "chair_i", "recall")]
        tables.append(_metric_table(f"MSCOCO CHAIR (n = {coco.get('n', '?')} captions)", rows))
    lines = [f"{record.get('model', '?')}: {record.get('n_samples', '?')} samples."]
    words = record.get("words")
    details: list[Table] = []
    if words:
        kinds = words.get("by_kind") or {}
        counted = ", ".join(f"{kind}: {v.get('hallucinated')} of {v.get('n')}" for kind, v in kinds.items())
        lines.append(
            f"{words.get('n_words')} shape and colour words, {words.get('n_hallucinated')} hallucinated "
            f"({counted}). AUROC > 0.5: the feature is larger for hallucinated words."
        )
        tables.append(_word_table(words))
        details.append(_word_curves_table(words.get("curves") or {}))
    if not tables:
        lines.append("Nothing could be scored (see the notes).")
    entry = _entry(title, path, lines=lines)
    entry["tables"] = tables
    entry["details"] = [d for d in details if d["rows"]]
    return entry


def interval_text(stat: Any, scale: float = 100.0, digits: int = 1) -> str | None:
    """{"mean", "low", "high"} as "91.0 [85.2, 95.1]" (times ``scale``); None when there is no mean."""
    if not _has_mean(stat):
        return None
    mean = f"{stat['mean'] * scale:.{digits}f}"
    if stat.get("low") is None or stat.get("high") is None:
        return mean
    return f"{mean} [{stat['low'] * scale:.{digits}f}, {stat['high'] * scale:.{digits}f}]"


def percent(value: Any) -> str | None:
    """A rate as a percentage with one decimal; None when absent."""
    return None if not isinstance(value, int | float) else f"{100 * value:.1f}"


def _entry(title: str, path: Path, lines: list[str]) -> dict[str, Any]:
    return {"title": title, "source": Path(path).name, "lines": lines, "tables": [], "details": []}


def _has_mean(stat: Any) -> bool:
    return isinstance(stat, dict) and isinstance(stat.get("mean"), int | float)


def _skipped(condition: dict[str, Any]) -> str:
    layers = condition.get("skipped") or []
    return f"{format_layers(layers)} ({len(layers)})" if layers else "none"


def _speedup(value: Any) -> str | None:
    return f"{value:.2f}×" if isinstance(value, int | float) else None


def _random_summary(conditions: list[dict[str, Any]], name: str) -> str | None:
    """Mean agreement of the random controls of ``name``, with their range: "3.1 (0.0–6.2, 3 seeds)"."""
    means = [
        c["token_agreement"]["mean"]
        for c in conditions
        if c.get("control_of") == name and _has_mean(c.get("token_agreement"))
    ]
    if not means:
        return None
    average = 100 * sum(means) / len(means)
    return f"{average:.1f} ({100 * min(means):.1f}–{100 * max(means):.1f}, {len(means)} seeds)"


def _random_table(conditions: list[dict[str, Any]]) -> Table:
    rows = [
        [
            c.get("name"),
            c.get("control_of"),
            _skipped(c),
            interval_text(c.get("token_agreement")),
            interval_text(c.get("edit_distance")),
            _speedup(c.get("speedup_per_token")),
        ]
        for c in conditions
        if c.get("kind") == "random"
    ]
    columns = ["control", "control of", "layers skipped", "agreement %", "edit distance %", "speed-up"]
    return {"title": "Random controls", "columns": columns, "rows": rows}


def _outputs_table(conditions: list[dict[str, Any]]) -> Table:
    """Every condition's output on every sample, with its per-sample scores."""
    columns = [
        "condition",
        "sample",
        "output",
        "tokens",
        "agreement %",
        "edit distance %",
        "correct",
        "mentions",
        "hallucinated",
    ]
    rows = [
        [
            condition.get("name"),
            s.get("sample_id"),
            s.get("text"),
            s.get("n_tokens"),
            percent(s.get("token_agreement")),
            percent(s.get("edit_distance")),
            s.get("correct"),
            s.get("n_mentions"),
            s.get("n_hallucinated"),
        ]
        for condition in conditions
        for s in condition.get("samples") or []
    ]
    return {"title": "Outputs, per condition and sample", "columns": columns, "rows": rows}


def _metric_table(title: str, rows: list[list[Any]]) -> Table:
    return {"title": title, "columns": ["metric", "%"], "rows": rows}


def _word_table(words: dict[str, Any]) -> Table:
    means = words.get("feature_means") or {}
    rows = []
    for name, stat in (words.get("features") or {}).items():
        auroc = {"mean": stat.get("auroc"), "low": stat.get("low"), "high": stat.get("high")}
        mean = means.get(name) or {}
        rows.append(
            [
                f"{name}: {WORD_FEATURES.get(name, '')}".rstrip(": "),
                interval_text(auroc, scale=1.0, digits=3),
                _number(mean.get("faithful")),
                _number(mean.get("hallucinated")),
                f"{stat.get('n_faithful')} / {stat.get('n_hallucinated')}",
            ]
        )
    columns = [
        "feature",
        "AUROC [95% CI]",
        "mean, faithful",
        "mean, hallucinated",
        "n faithful / hallucinated",
    ]
    return {"title": "Hallucinated vs faithful words", "columns": columns, "rows": rows}


def _word_curves_table(curves: dict[str, dict[str, list[float]]]) -> Table:
    """Per lens layer: mean JSD(p_{l-1}, p_l) and p_l(word) of faithful and of hallucinated words."""
    groups = [g for g in ("faithful", "hallucinated") if (curves.get(g) or {}).get("prob")]
    n_layers = max((len(curves[g]["prob"]) for g in groups), default=0)
    rows = []
    for layer in range(n_layers):
        row: list[Any] = [layer]
        for group in groups:
            jsd, prob = curves[group].get("jsd_next") or [], curves[group]["prob"]
            row += [_number(jsd[layer - 1]) if 1 <= layer <= len(jsd) else None, _number(prob[layer])]
        rows.append(row)
    columns = ["layer", *(f"{name}, {g}" for g in groups for name in ("JSD(l-1, l)", "p(word)"))]
    return {"title": "Per-layer curves of the words", "columns": columns, "rows": rows}


def _number(value: Any) -> float | None:
    return round(float(value), 4) if isinstance(value, int | float) else None
