"""``evolens run`` with ``causal:``: the causal tests on the traced answers into OUT/causal (causal.json with
its schema, the settings, the lens-based layers it is set beside, the figure), shown in the report; the
same through ``--causal`` on the command line; answers without an answer word listed, not dropped."""

from __future__ import annotations

import json
from pathlib import Path

from evolens.cli import main
from evolens.pipeline.config import load_config
from evolens.report.causal_view import apart_from_zero
from tests.run.conftest import tiny_run_config

COLOURS = "red,orange,yellow,green,blue,purple,pink,brown"


def test_run_writes_causal_json_its_figure_and_the_report_section(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    text = tiny_run_config(tiny_vlm_dir, tmp_path / "run").replace(
        "analyze: {n_boot: 50}", "analyze: {n_boot: 20}"
    )
    text += "causal: {methods: [knockout, patch], window: 2, corrupt: blank, limit: 3}\n"
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    out = tmp_path / "run" / "causal"
    record = json.loads((out / "causal.json").read_text())
    assert record["schema"] == "evolens.causal/1"
    assert set(record["methods"]) == {"knockout", "patch"}
    assert record["settings"]["window"] == 2 and record["settings"]["corrupt"] == "blank"
    assert set(record["key_layers"]) >= {"critical (found)", "critical (threshold rule)"}
    knockout = record["methods"]["knockout"]
    # a 6-layer model, windows of 2 decoder layers: starts 1..5; no answer words: every answer has a target
    assert knockout["windows"] == [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    assert knockout["n_samples"] == 3 and record["settings"]["without_target"] == []
    assert len(knockout["effects"]["logprob"]["mean"]) == 5
    assert (out / "causal.png").is_file() and (out / "causal.svg").is_file()
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Causal tests by layer window" in report and "knockout: effect per layer window" in report


def test_causal_flags_reach_the_config(tmp_path: Path) -> None:
    settings = load_config(
        None,
        {"data.source": "shapes", "causal.methods": ["knockout"], "causal.answer": COLOURS.split(",")},
    )
    assert settings.causal.enabled and settings.causal.answer[0] == "red"
    assert not load_config(None, {"data.source": "shapes"}).causal.enabled


def test_windows_whose_interval_excludes_zero_are_named() -> None:
    effect = {"mean": [0.5, 0.0, -0.4], "low": [0.1, -0.2, -0.6], "high": [0.9, 0.2, -0.1]}
    assert apart_from_zero(effect, [[1, 2], [2, 3], [3, 4]]) == [1, 3]
