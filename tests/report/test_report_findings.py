"""The report's image-effect and probe sections are summary.json's numbers as the analysis wrote them; what
was not computed keeps its reason, and what an older summary.json lacks is named in the notes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evolens.report import ReportInputs
from evolens.report.build import collect
from evolens.vocabulary import IMAGE_EFFECT, METRICS
from tests.report.synthetic_run import write_synthetic_run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_synthetic_run(tmp_path_factory.mktemp("findings"), n_samples=4)


def summary_of(run: dict[str, Path]) -> dict:
    return json.loads((run["analysis"] / "summary.json").read_text())


def test_image_effect_curves_are_the_summary_s(synthetic: dict[str, Path]) -> None:
    data = collect(ReportInputs(trace_dir=synthetic["trace"], analysis_dir=synthetic["analysis"]))
    effect, written = data["image_effect"], summary_of(synthetic)["image_effect"]
    assert [c["name"] for c in effect["conditions"]] == ["blank", "shuffled"]
    assert [m["key"] for m in effect["metrics"]] == list(IMAGE_EFFECT)
    for shown in effect["metrics"]:
        assert shown["label"] == METRICS[shown["key"]].label
        for curve in shown["curves"]:
            numbers = written["conditions"][curve["condition"]]["metrics"][shown["key"]]
            for bound in ("mean", "low", "high"):
                assert curve[bound] == numbers[bound]
            assert curve["apart"] == numbers["layers_apart_from_0"]
    blank = next(m for m in effect["metrics"] if m["key"] == "log_prob")["curves"][0]
    assert blank["condition"] == "blank" and blank["mean"][0] > 0.3, "sample 1 on lost 0.7 nats"


def test_probe_curves_are_the_summary_s(synthetic: dict[str, Path]) -> None:
    data = collect(ReportInputs(trace_dir=synthetic["trace"], analysis_dir=synthetic["analysis"]))
    written = summary_of(synthetic)["probes"]
    shown = data["probes"]
    assert shown["interval"] == written["interval"] and len(shown["prompts"]) == 2
    colour = shown["prompts"][0]
    assert (colour["asked"], colour["control"], colour["step"]) == ("color", "shape", 0)
    first = colour["attributes"][0]
    assert first["name"] == "color" and first["role"] == "asked"
    assert first["accuracy"] == written["prompts"][0]["attributes"]["color"]["accuracy"]
    count = next(a for a in colour["attributes"] if a["name"] == "count")
    assert count["reason"].startswith("every image has the same value")


def test_not_computed_keeps_its_reason_and_an_older_summary_is_named(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    summary = summary_of(synthetic)
    summary["image_effect"] = {"not computed": "no null traces given"}
    summary["probes"] = {"not computed": "no stored hidden states"}
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "summary.json").write_text(json.dumps(summary))
    shutil.copytree(synthetic["trace"], tmp_path / "trace")
    inputs = ReportInputs(trace_dir=tmp_path / "trace", analysis_dir=tmp_path / "analysis")
    data = collect(inputs)
    assert data["image_effect"] == {"reason": "no null traces given"}
    assert data["probes"] == {"reason": "no stored hidden states"}
    assert not [n for n in data["notes"] if n["source"] == "report"]
    del summary["image_effect"], summary["probes"]
    (tmp_path / "analysis" / "summary.json").write_text(json.dumps(summary))
    older = collect(inputs)
    assert older["image_effect"] is None and older["probes"] is None
    notes = [n["text"] for n in older["notes"] if n["source"] == "report"]
    assert len(notes) == 2 and "no image_effect" in notes[0] and "no probes" in notes[1]
    assert all("older evolens" in note for note in notes)
