"""``evolens run --compare-lens``: the samples traced again under a second lens, compared, reported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from evolens.cli import main
from evolens.lenses.tuned import TunedLens
from evolens.models import load_model


@pytest.fixture(scope="module")
def tiny_vlm_lens(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tuned lens with random translators for the tiny LLaVA, saved in the tuned-lens format."""
    loaded = load_model(str(tiny_vlm_dir))
    lens = TunedLens.identity(loaded.unembed, loaded.n_layers, loaded.name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lens.weight.copy_(0.3 * torch.randn(lens.weight.shape, generator=generator))
    return lens.save(tmp_path_factory.mktemp("lens"))


def test_run_traces_both_lenses_and_reports_the_comparison(
    tiny_vlm_dir: Path, tiny_vlm_lens: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        "--model",
        str(tiny_vlm_dir),
        "--source",
        "shapes",
        "--limit",
        "3",
        "--prompt",
        "Describe.",
    ]
    args += ["--out", str(out), "--max-new-tokens", "4", "--no-keep-hidden", "--quiet"]
    assert main([*args, "--compare-lens", f"tuned:{tiny_vlm_lens}"]) == 0
    result = json.loads((out / "lens-compare" / "compare" / "compare.json").read_text())
    assert result["same_inputs"] is True
    assert [row["lens"] for row in result["stages"]] == ["normed", "tuned"]
    first, second = (trace["distribution"]["kl_last"]["all"]["mean"] for trace in result["traces"])
    assert first != second and first[-1] == second[-1] == 0.0
    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert any(entry["title"] == "Lens comparison" for entry in data["experiments"])
    assert any(figure["name"] == "kl_to_final.png" for figure in data["figures"])
    meta = json.loads((out / "lens-compare" / "trace" / "meta.json").read_text())
    assert meta["lens"] == "tuned" and meta["lens_path"] == str(tiny_vlm_lens.resolve())
    assert main([*args, "--compare-lens", f"tuned:{tiny_vlm_lens}"]) == 0  # finished: nothing redone
