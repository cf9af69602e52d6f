"""The command line answers without loading torch or transformers wherever no model runs.

Each case runs ``python -X importtime -m evolens ...`` in a fresh interpreter and reads the modules it
imported from the import-time log (stderr), so a heavy import anywhere on the path fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers")
COMMANDS = ("trace", "run", "analyze", "compare", "skip", "hallucination", "verify", "models", "demo")


def imported_modules(*args: str, cwd: Path | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level names of every module ``evolens args`` imported, and the finished process."""
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "evolens", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "evolens" in names, done.stderr[-2000:]
    return names, done


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("models",),
        *((command, "--help") for command in COMMANDS),
        ("hallucination", "decode", "--help"),
    ],
    ids=lambda args: " ".join(args),
)
def test_help_and_listing_import_no_model_library(args: tuple[str, ...]) -> None:
    names, done = imported_modules(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not names & set(HEAVY), f"`evolens {' '.join(args)}` imported {sorted(names & set(HEAVY))}"


def test_a_config_error_is_reported_before_any_heavy_import(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data: {source: shapes}\ntrace: {batch_size: 0}\n")
    names, done = imported_modules("run", "--config", str(config))
    assert done.returncode == 2 and "trace.batch_size" in done.stderr
    assert not names & set(HEAVY)


def test_analyze_on_an_existing_trace_needs_no_model_library(tmp_path: Path) -> None:
    from tests.report.synthetic_run import write_synthetic_run

    trace = write_synthetic_run(tmp_path / "run", n_samples=2)["trace"]
    names, done = imported_modules("analyze", str(trace), "--out", str(tmp_path / "out"), "--no-figures")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "summary.json").is_file()
    assert not names & set(HEAVY)


def test_import_evolens_is_light() -> None:
    code = "import sys, evolens; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("args", [("models",), ("analyze", "--help"), ("run", "--help")], ids=" ".join)
def test_piped_help_and_tables_are_not_cut_at_80_columns(args: tuple[str, ...]) -> None:
    """Defect: help and `evolens models` were cut when piped (``llava_onevis…``, ``--prob-rise-frac…``)."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [sys.executable, "-m", "evolens", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "…" not in done.stdout, done.stdout
    expected = {"models": "llava_onevision", "analyze": "--prob-rise-frac", "run": "--max-new-tokens"}
    assert expected[args[0]] in done.stdout
