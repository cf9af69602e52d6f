"""``evolens skip`` end to end on a tiny random Llama saved to disk, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evolens.cli import main
from tests.analysis.synthetic import planted_sample, write_trace


@pytest.fixture(scope="module")
def planted_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer trace whose stages are known: critical layer 1, mutation layer 4."""
    jsd = np.tile([0.5, 0.01, 0.01, 0.5], (3, 1))
    prob = np.tile([0.0, 0.8, 0.8, 0.8, 0.8], (3, 1))
    return write_trace(tmp_path_factory.mktemp("trace"), [planted_sample("s0", jsd, prob)])


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_skip_range_writes_json_table_and_figure(tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["skip", "--model", str(tiny_llama_dir), "--out", str(tmp_path), "--prompt", "Name a colour."]
    code, out, _ = run([*args, "--skip", "1-2", "--max-new-tokens", "4", "--seeds", "2"], capsys)
    assert code == 0
    record = json.loads((tmp_path / "skip.json").read_text())
    assert record["schema"] == "evolens.skip/1" and record["n_layers"] == 4
    names = [c["name"] for c in record["conditions"]]
    assert names == ["baseline", "skip 1-2", "random-skip 1-2-s0", "random-skip 1-2-s1"]
    baseline = record["conditions"][0]
    assert baseline["token_agreement"]["mean"] == 1.0 and baseline["edit_distance"]["mean"] == 0.0
    assert record["conditions"][1]["skipped"] == [1, 2]
    assert (tmp_path / "skip.png").stat().st_size > 0 and (tmp_path / "skip.svg").stat().st_size > 0
    assert "baseline" in out


def test_plan_stages_uses_the_trace(
    tiny_llama_dir: Path, planted_trace: Path, tmp_path: Path, capsys
) -> None:
    args = ["skip", "--model", str(tiny_llama_dir), "--out", str(tmp_path), "--prompt", "Name a colour."]
    code, _, _ = run(
        [*args, "--plan", "stages", "--trace", str(planted_trace), "--max-new-tokens", "3"], capsys
    )
    assert code == 0
    record = json.loads((tmp_path / "skip.json").read_text())
    assert record["stages"]["critical_layer"] == 1 and record["stages"]["mutation_layer"] == 4
    skipped = {c["name"]: c["skipped"] for c in record["conditions"] if c["kind"] != "random"}
    assert skipped == {"baseline": [], "stabilization": [1, 2], "mutation": [3]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--skip", "2-7"], "outside 0..3"),
        (["--skip", "0-3"], "skipping all 4 layers"),
        (["--skip", ""], "empty skip"),
        ([], "exactly one of --skip"),
        (["--plan", "stages"], "needs --trace"),
        (["--plan", "stages", "--trace", "no/such/trace"], "no trace there"),
        (["--plan", "layers", "--trace", "x"], "unknown --plan"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_llama_dir: Path, tmp_path: Path, capsys, extra, message
) -> None:
    code, _, err = run(["skip", "--model", str(tiny_llama_dir), "--out", str(tmp_path), *extra], capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("evolens:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in err


def test_layer_mix_decoding_command(tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["hallucination", "decode", "--model", str(tiny_llama_dir), "--out", str(tmp_path)]
    args += ["--prompt", "Hi."]
    code, _, _ = run(
        [*args, "--layers", "2", "--alpha", "0", "--alpha", "1e6", "--max-new-tokens", "4"], capsys
    )
    assert code == 0
    conditions = json.loads((tmp_path / "layer_mix.json").read_text())["conditions"]
    assert [c["name"] for c in conditions] == ["baseline", "layer_mix a=0", "layer_mix a=1e+06"]
    assert conditions[1]["token_agreement"]["mean"] == 1.0  # alpha 0 is plain greedy decoding
    assert conditions[2]["layer_mix"] == {"layers": [2], "alpha": 1e6, "top_k": 10}


def test_layer_mix_bad_layer(tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["hallucination", "decode", "--model", str(tiny_llama_dir), "--out", str(tmp_path)]
    args += ["--layers", "4"]
    code, _, err = run(args, capsys)
    assert code == 2 and "layer-mix layers must be in 1..3" in err
