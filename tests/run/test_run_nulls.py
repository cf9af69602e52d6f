"""``evolens run`` with ``nulls:``: the trace's own tokens scored under each null into OUT/nulls/<condition>,
the analysis' image effect against them and its probes, in summary.json, the figures and the report; killed
while scoring a null, the run resumes to the results of one never interrupted."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from evolens.cli import main
from tests.run.conftest import tiny_run_config
from tests.run.test_run_resume import assert_same, finished_stages, results, run_in_process, run_killed

CONDITIONS = ("blank", "shuffled")


def nulls_config(model_dir: Path, out: Path, images: Path) -> str:
    """The tiny run (4 shapes scenes, the colour question), with hidden states and two nulls."""
    text = tiny_run_config(model_dir, out, images)
    text = text.replace("prompts: [Describe this image.]", "prompts: ['What is the color of the shape?']")
    return (
        text.replace("keep_hidden: false", "keep_hidden: true")
        + f"nulls: {{conditions: [{', '.join(CONDITIONS)}]}}\n"
    )


def null_results(out: Path) -> dict:
    """The null traces' tables as plain values (sorted: parts may split differently)."""
    found = {}
    for condition in CONDITIONS:
        steps = pd.read_parquet(out / "nulls" / condition / "steps").sort_values(["sample_id", "step"])
        found[condition] = json.loads(
            steps.reset_index(drop=True).to_json(orient="records", double_precision=15)
        )
    return found


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="module")
def reference_run(tiny_vlm_dir: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nulls")
    config = root / "run.yaml"
    config.write_text(nulls_config(tiny_vlm_dir, root / "out", images))
    assert run_in_process(config) == 0
    return root / "out"


def test_nulls_are_scored_and_the_analysis_compares_against_them(reference_run: Path) -> None:
    out = reference_run
    assert {"data", "trace", "nulls", "analyze", "report"} == finished_stages(out)
    traced = pd.read_parquet(out / "trace" / "steps").sort_values(["sample_id", "step"])
    for condition in CONDITIONS:
        meta = json.loads((out / "nulls" / condition / "meta.json").read_text())
        assert (meta["mode"], meta["condition"], meta["hidden"]) == ("score", condition, None)
        scored = pd.read_parquet(out / "nulls" / condition / "steps").sort_values(["sample_id", "step"])
        assert list(scored["token_id"]) == list(traced["token_id"]), "the trace's own tokens, scored again"
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    effect = summary["image_effect"]
    assert list(effect["conditions"]) == list(CONDITIONS)
    assert (
        effect["conditions"]["blank"]["n_images"] == 4
        and effect["conditions"]["blank"]["samples_not_in_null"] == 0
    )
    log_prob = effect["conditions"]["blank"]["metrics"]["log_prob"]
    assert len(log_prob["mean"]) == 7 and any(abs(v) > 1e-4 for v in log_prob["mean"]), "the image matters"
    colour = summary["probes"]["prompts"][0]
    assert (colour["asked"], colour["control"], colour["step"]) == ("color", "shape", 0)
    assert colour["attributes"]["color"]["layers"] == list(range(7))
    assert {"image_effect.png", "probes.png"} <= set(summary["figures"])
    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert [c["name"] for c in data["image_effect"]["conditions"]] == list(CONDITIONS)
    assert data["probes"]["prompts"][0]["asked"] == "color"


def test_a_run_killed_while_scoring_a_null_resumes_to_the_same_results(
    tiny_vlm_dir: Path, images: Path, reference_run: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    config.write_text(nulls_config(tiny_vlm_dir, out, images))
    killed = run_killed(config, "trace:6")  # 4 images traced, 1 scored blank, killed loading the next
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished_stages(out) == {"data", "trace"}
    assert len(pd.read_parquet(out / "nulls" / "blank" / "samples")) == 1
    scored = sorted((out / "nulls" / "blank" / "samples").iterdir())
    assert run_in_process(config) == 0
    assert all(part.exists() for part in scored), "the sample scored before the kill is kept"
    assert_same(results(out), results(reference_run))
    assert_same(null_results(out), null_results(reference_run))


def test_changing_the_nulls_redoes_the_nulls_and_the_analysis_only(
    reference_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference_run, out)
    record = json.loads((out / "run.json").read_text())
    parts = sorted(p.name for p in (out / "nulls" / "blank" / "samples").iterdir())
    args = ["run", "--config", str(out / "config.yaml"), "--out", str(out), "--quiet"]
    assert main([*args, "--null", "blank"]) == 0
    after = json.loads((out / "run.json").read_text())
    assert after["stages"]["trace"] == record["stages"]["trace"]
    assert after["stages"]["nulls"]["fingerprint"] != record["stages"]["nulls"]["fingerprint"]
    assert sorted(p.name for p in (out / "nulls" / "blank" / "samples").iterdir()) == parts, (
        "resumed, not redone"
    )
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert list(summary["image_effect"]["conditions"]) == ["blank"]
    assert main([*args, "--null", "blank", "--null", "blank"]) == 2
