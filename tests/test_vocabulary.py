"""One vocabulary for named things: every metric is defined once in ``evolens.vocabulary``, and the trace's
schema, the engine, the analyses, the figures and the report read it instead of keeping their own copies.

The two checks over the source (no stray label, no list of metric names) read ``src/evolens`` with ``ast``,
so adding a copy back anywhere fails here.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pyarrow as pa
import pytest

import evolens
from evolens import vocabulary
from evolens.vocabulary import METRICS, STORED

SOURCE = Path(evolens.__file__).parent
VOCABULARY = SOURCE / "vocabulary"
MIN_NAMES = 3


def python_files() -> list[Path]:
    """Every module of evolens outside the vocabulary package."""
    return sorted(p for p in SOURCE.rglob("*.py") if VOCABULARY not in p.parents)


def docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of a module, class or function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def stray_labels(source: str) -> list[str]:
    """The metric labels spelled in ``source``'s string constants, docstrings apart."""
    tree = ast.parse(source)
    docstrings = docstring_nodes(tree)
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    return [m.label for m in METRICS.values() for text in strings if m.label in text]


def name_lists(source: str) -> list[list[str]]:
    """Every tuple, list or set literal in ``source`` holding at least ``MIN_NAMES`` metric names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = [
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in METRICS
            ]
            if len(names) >= MIN_NAMES:
                found.append(names)
    return found


def test_no_module_spells_a_metric_label_but_the_vocabulary() -> None:
    """Defect: the same metric had several labels ("JSD to the previous layer" in the analysis, "JSD between
    consecutive layers" in the report, another in report.js)."""
    offenders = {
        str(path.relative_to(SOURCE)): labels
        for path in python_files()
        if (labels := stray_labels(path.read_text(encoding="utf-8")))
    }
    for path in sorted(SOURCE.rglob("*")):
        if path.suffix in (".js", ".html", ".css") and VOCABULARY not in path.parents:
            text = path.read_text(encoding="utf-8")
            if labels := [m.label for m in METRICS.values() if m.label in text]:
                offenders[str(path.relative_to(SOURCE))] = labels
    assert not offenders, f"metric labels copied outside evolens.vocabulary: {offenders}"


def test_no_module_lists_metric_names_but_the_vocabulary() -> None:
    """Defect: the metric names were listed about seven times (schema, trace, report, compare, plots...)."""
    offenders = {
        str(path.relative_to(SOURCE)): lists
        for path in python_files()
        if (lists := name_lists(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"lists of metric names outside evolens.vocabulary: {offenders}"


@pytest.mark.parametrize(
    "source",
    [
        'CURVES = ("jsd_next", "prob", "entropy")\n',
        'def f():\n    return [m for m in ["rank", "kl_last", "top1"]]\n',
        "from typing import Literal\nShown = Literal['prob', 'rank', 'jsd_last']\n",
    ],
)
def test_the_list_check_catches_a_list_added_back(source: str) -> None:
    assert name_lists(source), source


def test_the_label_check_catches_a_label_added_back_but_not_a_docstring() -> None:
    label = METRICS["jsd_next"].label
    assert stray_labels(f'AXIS = "{label}"\n') == [label]
    assert stray_labels(f'def f(x):\n    return f"{label}: {{x}}"\n') == [label]
    assert stray_labels(f'def f():\n    """Draws {label}."""\n') == []


def test_step_metrics_are_the_stored_metrics() -> None:
    """The engine's ``StepMetrics`` keeps its own fields (a dataclass of tensors); they must be the
    vocabulary's stored metrics, in order."""
    from evolens.tracing.engine import StepMetrics

    assert [f.name for f in fields(StepMetrics)] == [m.name for m in STORED if m.source == "lens"]


def test_the_steps_schema_is_the_stored_metrics_with_their_arrow_types() -> None:
    from evolens.io.store import STEPS_SCHEMA, arrow_type
    from evolens.io.trace import PER_LAYER, PER_TRANSITION

    assert STEPS_SCHEMA.names[:4] == ["sample_id", "step", "token_id", "token"]
    assert STEPS_SCHEMA.names[4:] == [m.name for m in STORED]
    for m in STORED:
        assert STEPS_SCHEMA.field(m.name).type == arrow_type(m.arrow or ""), m.name
    assert STEPS_SCHEMA.field("topk_ids").type == pa.list_(pa.list_(pa.int32()))
    assert STEPS_SCHEMA.field("rank").type == pa.list_(pa.int32())
    assert PER_LAYER == ("prob", "rank", "entropy", "jsd_last", "kl_last")
    assert PER_TRANSITION == ("jsd_next", "paper_js", "attn_image", "attn_prompt", "attn_generated")


def test_every_metric_is_fully_described() -> None:
    labels = [m.label for m in METRICS.values()]
    assert len(set(labels)) == len(labels), "two metrics share a label"
    for m in METRICS.values():
        assert m.per in ("layer", "transition", "layer_topk", "layer_heads"), m
        assert m.unit and m.short and m.direction, m
        assert (m.arrow is not None) == m.stored, m
        assert m.source in ("lens", "attention"), m
    assert [m.name for m in METRICS.values() if not m.stored] == ["log_rank", "log_prob", "top1"]
    assert list(METRICS["jsd_next"].layers(4)) == [1, 2, 3, 4]
    assert list(METRICS["prob"].layers(4)) == [0, 1, 2, 3, 4]
    assert (
        list(METRICS["attn_image"].layers(4)) == list(METRICS["attn_image_heads"].layers(4)) == [1, 2, 3, 4]
    )
    assert (
        tuple(m.name for m in METRICS.values() if m.per == "transition" and m.source == "attention")
        == vocabulary.ATTENTION_SHARES
    )
    for selection in (
        vocabulary.LAYER_STATISTICS,
        vocabulary.OVERVIEW,
        vocabulary.EXPLORER,
        vocabulary.HEATMAP,
        vocabulary.IMAGE_EFFECT,
    ):
        assert set(selection) <= set(METRICS), selection
    with pytest.raises(ValueError, match="unknown metric 'jsd'"):
        vocabulary.metric("jsd")


def test_figures_and_report_share_the_vocabulary_s_colours() -> None:
    """The figures' style reuses the plain constants the report passes to the page (no copies)."""
    from evolens.plots import style

    assert style.STAGE_COLORS is vocabulary.STAGE_COLORS
    assert style.KEY_LAYER_COLORS is vocabulary.KEY_LAYER_COLORS
    assert style.STAGE_LABELS is vocabulary.STAGE_LABELS
    assert style.visible_token is vocabulary.visible_token


def test_layers_are_written_one_way() -> None:
    from evolens.analysis.stages import Stage

    assert vocabulary.layer_span(30, 30) == "layer 30" == Stage("mutation", 30, 30).span
    assert vocabulary.layer_span(2, 20) == "layers 2-20"
    assert vocabulary.format_layers({9, 3, 4, 5}) == "3-5,9"
    assert vocabulary.stage_label("rapid_evolution") == "rapid evolution"
    assert vocabulary.stage_label("late_surge") == "late surge"
