"""The report's data, checked against independent computations on a synthetic run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evolens.report
from evolens.io.trace import load_trace
from evolens.report import ReportInputs, collect, render
from evolens.report.samples import settle_layers
from evolens.report.sections import tables_from_json, value_and_ci
from evolens.vocabulary import KEY_LAYER_COLORS, STAGE_COLORS, WHITESPACE
from tests.report.synthetic_run import N_LAYERS, TOP_K, VOCAB, write_synthetic_run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_synthetic_run(tmp_path_factory.mktemp("run"), n_samples=4)


@pytest.fixture(scope="module")
def data(synthetic: dict[str, Path]) -> dict:
    inputs = ReportInputs(
        trace_dir=synthetic["trace"],
        analysis_dir=synthetic["analysis"],
        experiments={"Layer skipping": synthetic["skip"], "Hallucination": synthetic["hallucination"]},
        failures=[{"sample_id": "broken", "image": "broken.png", "error": "not an image file"}],
    )
    return collect(inputs)


def steps_table(synthetic: dict[str, Path]) -> pd.DataFrame:
    return pd.read_parquet(synthetic["trace"] / "steps")


def test_curves_are_token_means_with_intervals_around_them(data: dict, synthetic: dict[str, Path]) -> None:
    steps = steps_table(synthetic)
    for curve in data["curves"]:
        expected = np.stack(steps[curve["key"]].to_numpy()).mean(0)
        np.testing.assert_allclose(curve["mean"], expected, atol=1e-5)
        low, high = np.array(curve["low"]), np.array(curve["high"])
        assert np.all(low <= np.array(curve["mean"]) + 1e-5) and np.all(
            np.array(curve["mean"]) <= high + 1e-5
        )
    jsd = next(c for c in data["curves"] if c["key"] == "jsd_next")
    assert jsd["layers"] == list(range(1, N_LAYERS + 1)), "JSD(l-1, l) is drawn at layer l"


def test_samples_carry_the_trace_rows_and_decoded_topk(data: dict, synthetic: dict[str, Path]) -> None:
    steps = steps_table(synthetic)
    assert [s["id"] for s in data["samples"]] == [f"scene-{i}" for i in range(4)]
    first = data["samples"][1]
    rows = steps[steps.sample_id == "scene-1"].sort_values("step")
    assert first["tokens"] == list(rows["token"])
    np.testing.assert_allclose(first["metrics"]["prob"], np.stack(rows["prob"].to_numpy()), atol=1e-5)
    assert np.array(first["topk_ids"]).shape == (len(rows), N_LAYERS + 1, TOP_K)
    for token_id, text in data["vocab"].items():
        assert VOCAB[int(token_id)] == text
    assert first["image"].startswith("data:image/jpeg;base64,")


def test_last_layer_top1_is_the_emitted_token_in_the_report(data: dict) -> None:
    for sample in data["samples"]:
        last_top1 = [layers[-1][0] for layers in sample["topk_ids"]]
        assert last_top1 == sample["token_ids"]


def test_settle_layer_is_where_the_emitted_token_stays_top1() -> None:
    rank = np.array([[3, 2, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 2, 0], [5, 5, 5, 5, 0]])
    assert settle_layers(rank).tolist() == [2, 0, 4, 4]


def test_stages_and_tables_from_the_analysis_and_experiments(data: dict) -> None:
    stages = data["stages"]
    assert stages["critical_layer"] == 3 and stages["critical_ci"] == [2.0, 4.0]
    assert stages["mutation_layer"] == N_LAYERS and stages["mutation_ci"] is None
    assert [s["name"] for s in stages["stages"]] == ["rapid_evolution", "stabilization", "mutation"]
    skip = next(e for e in data["experiments"] if e["title"] == "Layer skipping")
    assert skip["tables"][0]["rows"][1][0] == "skip stabilization"
    assert data["features"][0]["title"] == "one image, every token · t-SNE"
    assert data["figures"][0]["src"].startswith("data:image/png;base64,")
    assert data["failures"][0]["sample_id"] == "broken"


def test_stage_labels_and_colours_are_the_figures_own(data: dict) -> None:
    """Defect: the page had its own stage colours, and a one-layer stage read "layers 30–30"."""
    assert data["style"]["stage_colors"] == STAGE_COLORS
    assert data["style"]["key_layer_colors"] == KEY_LAYER_COLORS
    assert data["style"]["whitespace"] == WHITESPACE
    labels = [s["label"] for s in data["stages"]["stages"]]
    assert labels == [
        "rapid evolution: layers 0-2",
        "stabilization: layers 3-7",
        f"mutation: layer {N_LAYERS}",
    ]
    script = (Path(evolens.report.__file__).parent / "report.js").read_text()
    for colour in STAGE_COLORS.values():
        assert colour not in script, f"{colour} is copied into report.js instead of read from the data"


def skip_file(synthetic: dict[str, Path]) -> dict:
    return json.loads(synthetic["skip"].read_text())


def test_skip_json_is_one_row_per_condition_with_its_intervals(
    data: dict, synthetic: dict[str, Path]
) -> None:
    """Defect: the Experiments section was a 3,900-px dump of flattened JSON."""
    record = skip_file(synthetic)
    skip = next(e for e in data["experiments"] if e["title"] == "Layer skipping")
    assert skip["source"] == "skip.json"
    (table,) = skip["tables"]
    main = [c for c in record["conditions"] if c["kind"] != "random"]
    assert table["columns"] == [
        "condition",
        "layers skipped",
        "agreement %",
        "agreement %, random layers",
        "edit distance %",
        "speed-up per token",
    ]
    assert [row[0] for row in table["rows"]] == [c["name"] for c in main]
    for row, condition in zip(table["rows"], main, strict=True):
        agreement = condition["token_agreement"]
        expected = (
            f"{100 * agreement['mean']:.1f} [{100 * agreement['low']:.1f}, {100 * agreement['high']:.1f}]"
        )
        assert row[2] == expected
        assert row[5] == f"{condition['speedup_per_token']:.2f}×"
        controls = [c for c in record["conditions"] if c["control_of"] == condition["name"]]
        if controls:
            means = [100 * c["token_agreement"]["mean"] for c in controls]
            assert row[3].startswith(f"{np.mean(means):.1f} ({min(means):.1f}–{max(means):.1f}, 3 seeds")
    skipped = main[1]["skipped"]  # contiguous decoder layers, shown as a range with their count
    assert table["rows"][1][1] == f"{skipped[0]}-{skipped[-1]} ({len(skipped)})" and len(skipped) > 2
    assert any("accuracy, CHAIR_i, CHAIR_s" in line for line in skip["lines"]), "unmeasured columns are named"
    outputs = next(t for t in skip["details"] if t["title"].startswith("Outputs"))
    n_outputs = sum(len(c["samples"]) for c in record["conditions"])
    assert len(outputs["rows"]) == n_outputs, "every per-sample output is kept (collapsed)"
    randoms = next(t for t in skip["details"] if t["title"] == "Random controls")
    assert len(randoms["rows"]) == sum(c["kind"] == "random" for c in record["conditions"])


def test_hallucination_json_headline_scores(data: dict, synthetic: dict[str, Path]) -> None:
    record = json.loads(synthetic["hallucination"].read_text())
    entry = next(e for e in data["experiments"] if e["title"] == "Hallucination")
    tables = {t["title"]: t for t in entry["tables"]}
    descriptions = tables["Descriptions (shapes world, n = 4)"]
    assert descriptions["rows"][0] == ["CHAIR_i: hallucinated share of object mentions", "35.4"]
    words = tables["Hallucinated vs faithful words"]
    feature = record["words"]["features"]["jsd_mutation"]
    assert words["rows"][0][1] == f"{feature['auroc']:.3f} [{feature['low']:.3f}, {feature['high']:.3f}]"
    curves = entry["details"][0]
    assert len(curves["rows"]) == N_LAYERS + 1 and curves["rows"][0][1] is None, "JSD starts at layer 1"


def test_an_experiment_that_did_not_run_says_why(tmp_path: Path) -> None:
    from evolens.report.experiments import experiment_entry, experiment_notes

    value = {"not run": "no critical layer", "stages": {}}
    entry = experiment_entry("Layer skipping", tmp_path / "skip.json", value)
    assert entry is not None and entry["lines"] == ["Not run: no critical layer"] and entry["tables"] == []
    assert experiment_notes(value) == ["not run: no critical layer"]
    other = experiment_entry("Other", tmp_path / "x.json", {"n": 3, "rows": [{"a": 1}]})
    assert other is not None and [t["title"] for t in other["details"]] == ["Other", "Other: rows"]


def test_notes_gather_every_note_recorded(synthetic: dict[str, Path]) -> None:
    """Defect: nothing in the report said a view was capped or dropped images."""
    inputs = ReportInputs(
        trace_dir=synthetic["trace"],
        analysis_dir=synthetic["analysis"],
        experiments={"Layer skipping": synthetic["skip"], "Hallucination": synthetic["hallucination"]},
        run={"notes": ["3 inputs dropped: not images"]},
    )
    notes = collect(inputs)["notes"]
    summary = json.loads((synthetic["analysis"] / "summary.json").read_text())
    hallucination = json.loads(synthetic["hallucination"].read_text())
    assert notes == [
        {"source": "run", "text": "3 inputs dropped: not images"},
        *({"source": "analysis", "text": note} for note in summary["notes"]),
        *({"source": "Layer skipping", "text": f"left out: {f}"} for f in skip_file(synthetic)["failures"]),
        *({"source": "Hallucination", "text": note} for note in hallucination["notes"]),
    ]


def test_stage_timings_from_the_run_record(synthetic: dict[str, Path]) -> None:
    stages = {
        "data": {"fingerprint": "a", "seconds": 0.25},
        "trace": {"fingerprint": "b", "seconds": 241.5, "samples": 3},
        "analyze": {"fingerprint": "c"},  # recorded before timings existed
    }
    run = collect(ReportInputs(trace_dir=synthetic["trace"], run={"stages": stages}))["run"]
    assert run["timings"] == [{"stage": "data", "seconds": 0.25}, {"stage": "trace", "seconds": 241.5}]


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"critical_layer": 12}, (12.0, None)),
        ({"critical_layer": 12, "critical_layer_ci": [10, 14]}, (12.0, [10.0, 14.0])),
        ({"critical_layer": {"value": 11.5, "ci": [9, 13]}}, (11.5, [9.0, 13.0])),
        ({"critical_layer": {"median": 11, "low": 9, "high": 12}}, (11.0, [9.0, 12.0])),
        ({"critical_layer": [20, 24]}, (20.0, None)),
        ({}, (None, None)),
    ],
)
def test_value_and_ci_reads_the_shapes_a_summary_may_use(summary: dict, expected: tuple) -> None:
    assert value_and_ci(summary, "critical_layer") == expected


def test_tables_from_json_keeps_every_record_and_column() -> None:
    stat = {"mean": 0.5, "low": 0.25, "high": 0.75, "n": 4}
    rows = [
        {"a": 1, "b": 0.123456, "layers": [1, 4]},
        {"a": 2, "c": "x", "b": stat, "per_sample": [{"x": 1}]},
    ]
    tables = tables_from_json("T", {"n": 3, "rows": rows})
    assert tables[0] == {"title": "T", "columns": ["", "value"], "rows": [["n", 3]]}
    assert tables[1] == {
        "title": "T: rows",
        "columns": ["a", "b", "layers", "c"],
        "rows": [[1, 0.1235, "1, 4", None], [2, "0.500 [0.250, 0.750]", None, "x"]],
    }


def test_page_is_self_contained_and_its_data_parses(data: dict) -> None:
    page = render(data)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", page), "no network resources"
    assert "Plotly" in page
    payload = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert payload is not None
    assert json.loads(payload.group(1)) == json.loads(json.dumps(data))


def test_curves_are_the_analysis_numbers_not_a_second_bootstrap(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """Defect: the report re-ran the bootstrap with its own seed and n_boot, so it could disagree with
    summary.json. Its curves must be summary.json's per-layer statistics, whatever those were."""
    from evolens.pipeline.analyze import AnalyzeOptions, analyze
    from evolens.report.sections import layer_curves

    analyze(synthetic["trace"], tmp_path, AnalyzeOptions(figures=False, features=False, n_boot=37, seed=5))
    summary = json.loads((tmp_path / "summary.json").read_text())
    curves = collect(ReportInputs(trace_dir=synthetic["trace"], analysis_dir=tmp_path))["curves"]
    for curve in curves:
        statistics = summary["distribution"][curve["key"]]
        assert curve["layers"] == statistics["layers"], curve["key"]
        for bound in ("mean", "low", "high"):
            assert curve[bound] == statistics["all"][bound], (curve["key"], bound)
    summary["distribution"]["prob"]["all"]["low"][0] = -1.0
    doctored = layer_curves(summary)
    assert next(c for c in doctored if c["key"] == "prob")["low"][0] == -1.0


def test_what_summary_json_lacks_is_named_in_the_notes_never_recomputed(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """Defect: without the analysis' statistics the report ran its own bootstrap (and its own tokenizer
    look-up). A summary.json from an older evolens (no ``distribution``, no ``token_strings``) now leaves the
    curves out and shows unnamed tokens as #id, and the notes say so; the page labels come from the
    vocabulary."""
    summary = json.loads((synthetic["analysis"] / "summary.json").read_text())
    del summary["distribution"], summary["token_strings"]
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "summary.json").write_text(json.dumps(summary))
    shutil.copytree(synthetic["trace"], tmp_path / "trace")
    (tmp_path / "trace" / "vocab.json").unlink()  # the trace then names only its emitted tokens
    old = collect(ReportInputs(trace_dir=tmp_path / "trace", analysis_dir=tmp_path / "analysis"))
    assert old["curves"] == []
    report_notes = [note["text"] for note in old["notes"] if note["source"] == "report"]
    assert len(report_notes) == 2
    assert "per-layer statistics" in report_notes[0] and "older evolens" in report_notes[0]
    assert "token strings" in report_notes[1] and "#id" in report_notes[1]
    emitted = {int(i) for s in old["samples"] for i in s["token_ids"]}
    for token_id, text in old["vocab"].items():
        assert text == (VOCAB[int(token_id)] if int(token_id) in emitted else f"#{token_id}")
    from evolens.report.build import token_strings

    trace = load_trace(tmp_path / "trace")
    assert token_strings(trace, {"token_strings": {"3": "from summary"}}, [3, 999]) == {
        "3": "from summary",
        "999": "#999",
    }
    emitted_id = min(emitted)
    assert token_strings(trace, None, [emitted_id]) == {str(emitted_id): VOCAB[emitted_id]}

    bare = collect(ReportInputs(trace_dir=synthetic["trace"]))
    assert bare["curves"] == [] and bare["stages"] is None
    assert [note["text"] for note in bare["notes"]] == [
        "no analysis (summary.json): the stages and the per-layer curves are not shown"
    ]


def test_page_metrics_are_the_vocabulary_s(data: dict) -> None:
    from evolens.vocabulary import EXPLORER, METRICS, OVERVIEW

    assert [c["key"] for c in data["curves"]] == list(OVERVIEW)
    assert [c["label"] for c in data["curves"]] == [METRICS[key].label for key in OVERVIEW]
    assert [m["key"] for m in data["metrics"]] == list(EXPLORER) == list(data["samples"][0]["metrics"])
    assert {m["key"]: m["first"] for m in data["metrics"]}["jsd_next"] == 1
    assert all(m["label"] == METRICS[m["key"]].label for m in data["metrics"])
    assert not [note for note in data["notes"] if note["source"] == "report"]


def test_embedded_data_cannot_end_or_comment_out_the_script() -> None:
    """Defect: a prompt with ``<!--`` (or a model writing HTML) blanked report.html."""
    from evolens.report.build import script_json

    hostile = [
        "<!-- <script>",
        "</script><script>alert(1)</script>",
        "<![CDATA[ ]]>",
        "a\u2028b\u2029c",
        "x & y",
    ]
    text = script_json({"texts": hostile, "n": float("nan")})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"texts": hostile, "n": None}
