"""Exit codes as the README's table says: 2 and one line for each kind of error a user can fix (unknown
model, unwritable output, corrupt trace part, bad config, a run without a home folder). Exit code 1 (some
inputs failed, the rest done) is tested in test_trace_cli.py, exit code 3 (a bug: one line naming the
log file) in test_architecture.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolens.cli import main
from tests.analysis.conftest import planted_trace_samples, write_trace

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("evolens: error: "), err
    assert all(word in lines[0] for word in words), lines[0]


def test_an_unknown_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["trace", "--model", "nobody/no-such-model", "--prompt", "Hi", "--out", str(tmp_path / "t")])
    assert code == 2
    one_error_line(capsys.readouterr().err, "nobody/no-such-model")


def test_an_output_folder_that_cannot_be_written_exits_2(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["trace", "--model", str(tiny_llama_dir), "--prompt", "Hi", "--out", str(blocker / "trace")])
    assert code == 2
    one_error_line(capsys.readouterr().err, "cannot create the trace directory")


def test_a_corrupt_trace_part_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    trace = write_trace(tmp_path / "trace", planted_trace_samples(), model="synthetic-vlm")
    part = sorted((trace / "samples").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:20])
    code = main(["analyze", str(trace), "--out", str(tmp_path / "analysis"), "--no-figures"])
    assert code == 2
    one_error_line(capsys.readouterr().err, part.name)


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: demo\nout: runs/x\ndata:\n  source: shapes\ntrace:\n  max_new_tokens: -4\n")
    assert main(["run", "--config", str(config)]) == 2
    one_error_line(capsys.readouterr().err, "max_new_tokens")


NO_PASSWD_ENTRY = (
    "import pwd, sys\n"
    "def missing(uid): raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
    "pwd.getpwuid = missing\n"
    "from evolens.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""``evolens`` as run by a user with no passwd entry (as in some containers)."""


def test_without_a_home_a_trace_runs_and_errors_stay_one_line(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """No $HOME and no passwd entry: the kernel cache and the log folder fall back to a folder of the
    user in the temporary directory; a trace runs, and an error is one line, not a traceback."""
    unset = ("HOME", "EVOLENS_CACHE", "XDG_CACHE_HOME", "EVOLENS_LOG_DIR")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    base = [sys.executable, "-c", NO_PASSWD_ENTRY, "trace", "--model", str(tiny_llama_dir), "--prompt", "Hi"]
    out = str(tmp_path / "t")
    run = {"env": environment, "capture_output": True, "text": True, "timeout": 600, "cwd": ROOT}
    done = subprocess.run([*base, "--out", out, "--max-new-tokens", "2"], **run)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    refused = subprocess.run([*base, "--out", out, "--max-new-tokens", "3"], **run)  # type: ignore[call-overload]
    assert refused.returncode == 2
    one_error_line(refused.stderr, "other settings")
