"""``scripts/gpu_check.sh --dry-run`` checks the prepared GPU script on the CPU: both steps run and one JSON
holds every number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


def test_the_dry_run_writes_one_json_with_both_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(  # one model, one batch size: the script's path, not the benchmark's coverage
        gpu_check, "DRY_BENCHMARK", ["--models", "llava-1.5-7b", "--batch-sizes", "1", "--tokens", "2",
                                     "--repeats", "1", "--tiny", "--device", "cpu"],
    )  # fmt: skip
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["environment"]["torch"]
    assert result["model_tests"]["exit_code"] == 0 and result["model_tests"]["collected"] > 0
    report = result["benchmark"]["report"]
    assert report["benchmark"] == "gpu_overhead" and report["settings"]["tiny"] is True
    assert set(report["models"]["llava-1.5-7b"]["batches"]["1"]["seconds"]) == {"plain", "floor", "traced"}
    assert result["seconds"] < sum(result["limits_seconds"].values())


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_without_a_gpu_the_real_check_refuses_in_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--out", str(tmp_path / "x.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--dry-run" in done.stderr and len(done.stderr.splitlines()) == 1
