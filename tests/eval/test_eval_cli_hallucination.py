"""``evolens hallucination`` subcommands on the official-format fixtures, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_chair_command(tmp_path: Path, capsys) -> None:
    coco = FIXTURES / "coco"
    args = ["hallucination", "chair", "--instances", str(coco / "instances_val2014.json")]
    args += ["--captions", str(coco / "generated_captions.jsonl"), "--out", str(tmp_path / "chair.json")]
    code, out, _ = run(args, capsys)
    assert code == 0 and "chair_s" in out
    metrics = json.loads((tmp_path / "chair.json").read_text())
    assert metrics["chair_s"] == pytest.approx(1.0) and metrics["chair_i"] == pytest.approx(0.4)


def test_amber_command(tmp_path: Path, capsys) -> None:
    amber = FIXTURES / "amber"
    args = ["hallucination", "amber", "--amber-dir", str(amber), "--responses", str(amber / "responses.json")]
    code, _, _ = run([*args, "--out", str(tmp_path / "amber.json")], capsys)
    assert code == 0
    assert json.loads((tmp_path / "amber.json").read_text())["cog"] == pytest.approx(1 / 3)


def test_pope_command(capsys) -> None:
    pope = FIXTURES / "pope"
    args = ["hallucination", "pope", "--questions", str(pope / "coco_pope_random.json")]
    code, out, _ = run([*args, "--answers", str(pope / "answers.jsonl")], capsys)
    assert code == 0 and "0.4000" in out  # F1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chair", "--instances", "coco/captions_val2014.json",
          "--captions", "coco/generated_captions.jsonl"], "not an MSCOCO instances annotation file"),
        (["amber", "--amber-dir", "pope", "--responses", "amber/responses.json"],
         "no such AMBER annotations"),
        (["pope", "--questions", "amber/annotations.json", "--answers", "pope/answers.jsonl"],
         "not a POPE question file"),
        (["trace", "--trace", "no/such/trace", "--out", "x"], "no trace there"),
    ],
)  # fmt: skip
def test_wrong_files_are_one_line_errors(args: list[str], message: str, capsys) -> None:
    resolved = [str(FIXTURES / a) if "/" in a and not a.startswith("no/") else a for a in args]
    code, _, err = run(["hallucination", *resolved], capsys)
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("evolens:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_trace_command(labelled_trace, tmp_path: Path, capsys) -> None:
    trace, _ = labelled_trace
    args = ["hallucination", "trace", "--trace", str(trace.directory), "--out", str(tmp_path)]
    code, out, _ = run([*args, "--n-boot", "50"], capsys)
    assert code == 0 and "jsd_mutation" in out
    record = json.loads((tmp_path / "hallucination.json").read_text())
    assert record["schema"] == "evolens.hallucination/1"
    assert record["words"]["features"]["overtaken_any"]["auroc"] == 1.0
    assert record["words"]["features"]["overtaken"]["auroc"] == pytest.approx(0.75)
    # the planted text "The image shows a red circle and a green star." -> 1 of 2 mentions hallucinated
    descriptions = record["shapes"]["descriptions"]
    assert descriptions["chair_i"] == 0.5 and descriptions["chair_s"] == 1.0 and descriptions["n"] == 2
    assert (tmp_path / "words.png").is_file() and (tmp_path / "words.svg").is_file()
