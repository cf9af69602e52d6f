"""Kill ``evolens run`` with SIGKILL during tracing, during the analysis and while the report is written; run
it again with the same folder; the results must equal those of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evolens.cli import main
from tests.run.conftest import tiny_run_config

REPO = Path(__file__).resolve().parents[2]
KILL_SCRIPT = Path(__file__).with_name("kill_at.py")


def run_in_process(config: Path, *extra: str) -> int:
    return main(["run", "--config", str(config), "--quiet", *extra])


def run_killed(config: Path, point: str) -> subprocess.CompletedProcess:
    """``evolens run`` in a subprocess that SIGKILLs itself at ``point`` (see kill_at.py), with one torch
    thread, as ``reference_run``."""
    command = [sys.executable, str(KILL_SCRIPT), point, "--", "run", "--config", str(config), "--quiet"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    environment["OMP_NUM_THREADS"] = "1"
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=600)


def finished_stages(out: Path) -> set[str]:
    record = json.loads((out / "run.json").read_text())
    return set(record["stages"])


def results(out: Path) -> dict[str, Any]:
    """Everything a run produced as plain values: the manifest, the trace tables (sorted: part files may be
    split differently), the analysis' JSON files and the report's data (without the run's start time and
    with the run folder's own path written as <OUT>)."""
    samples = pd.read_parquet(out / "trace" / "samples").sort_values("sample_id").reset_index(drop=True)
    steps = pd.read_parquet(out / "trace" / "steps").sort_values(["sample_id", "step"]).reset_index(drop=True)
    page = (out / "report.html").read_text().replace(str(out), "<OUT>")
    payload = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    payload["run"].pop("created")
    payload["run"].pop("timings")  # how long each stage took differs from run to run
    analysis = {
        p.relative_to(out / "analysis").as_posix(): json.loads(p.read_text().replace(str(out), "<OUT>"))
        for p in sorted((out / "analysis").rglob("*.json"))
    }
    figures = sorted(p.relative_to(out / "analysis").as_posix() for p in (out / "analysis").rglob("*.png"))
    return {
        "manifest": (out / "manifest.jsonl").read_text(),
        "samples": json.loads(samples.to_json(orient="records")),
        "steps": json.loads(steps.to_json(orient="records", double_precision=15)),
        "analysis": analysis,
        "figures": figures,
        "report": payload,
    }


def assert_same(actual: Any, expected: Any, where: str = "results") -> None:
    """Equal structure, strings and integers; floats equal up to float32 rounding (CPU kernels may sum in
    another order in another process, so the last bit of a probability can differ)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6), where
    else:
        assert actual == expected, where


def test_run_json_holds_each_stage_duration_and_the_report_shows_them(reference_run: Path) -> None:
    """Issue 15, item 12: the report had no stage timings."""
    stages = json.loads((reference_run / "run.json").read_text())["stages"]
    assert set(stages) == {"data", "trace", "analyze", "report"}
    assert all(isinstance(entry["seconds"], float) and entry["seconds"] >= 0 for entry in stages.values())
    page = (reference_run / "report.html").read_text()
    payload = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    shown = {t["stage"]: t["seconds"] for t in payload["run"]["timings"]}
    earlier = ("data", "trace", "analyze")  # the report is written before its own time is known
    assert shown == {name: stages[name]["seconds"] for name in earlier}


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> dict:
    """The results of an uninterrupted run."""
    return results(reference_run)


def test_run_killed_in_every_stage_resumes_to_identical_results(
    tiny_vlm_dir: Path, shapes_images: Path, reference: dict, tmp_path: Path
) -> None:
    """One run folder, killed three times (each resumed run is killed further on), then finished."""
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    config.write_text(tiny_run_config(tiny_vlm_dir, out, shapes_images))
    n_samples = len(reference["samples"])

    killed = run_killed(config, "trace:3")  # two samples traced, the third being loaded
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished_stages(out) == {"data"}
    assert len(pd.read_parquet(out / "trace" / "samples")) == 2

    killed = run_killed(config, "analysis:2")  # the trace resumes and finishes; killed mid-analysis
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished_stages(out) == {"data", "trace"}
    assert len(pd.read_parquet(out / "trace" / "samples")) == n_samples
    assert not (out / "analysis").exists(), "a half-done analysis is not under its final name"

    killed = run_killed(config, "report")  # report.html written in full to a temporary name, not renamed
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert finished_stages(out) == {"data", "trace", "analyze"}
    assert not (out / "report.html").exists() and list(out.glob(".tmp-report.html*"))

    assert run_in_process(config) == 0
    assert not list(out.glob(".tmp-*")), "leftovers of the killed runs are swept"
    assert_same(results(out), reference)


def test_finished_run_is_not_redone_and_overwrite_starts_over(
    tiny_vlm_dir: Path, shapes_images: Path, reference_run: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    out = tmp_path / "out"
    shutil.copytree(reference_run, out)
    config.write_text(tiny_run_config(tiny_vlm_dir, out, shapes_images))
    record = (out / "run.json").read_text()
    report_time = (out / "report.html").stat().st_mtime_ns
    assert run_in_process(config) == 0
    assert (out / "run.json").read_text() == record and (
        out / "report.html"
    ).stat().st_mtime_ns == report_time
    # a later stage's setting redoes only that stage
    assert run_in_process(config, "--no-report") == 0
    assert run_in_process(config) == 0
    assert (
        json.loads((out / "run.json").read_text())["stages"]["trace"] == json.loads(record)["stages"]["trace"]
    )
    # what was traced may not change under an existing trace...
    assert main(["run", "--config", str(config), "--quiet", "--max-new-tokens", "3"]) == 2
    # ...unless the run starts over
    assert run_in_process(config, "--max-new-tokens", "3", "--overwrite") == 0
    steps = pd.read_parquet(out / "trace" / "steps")
    assert steps.groupby("sample_id").size().max() <= 3
