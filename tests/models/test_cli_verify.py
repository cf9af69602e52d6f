"""``evolens verify`` end to end, and the one-line errors for models evolens cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from evolens import verify
from evolens.cli import main
from evolens.models.check import CheckResult


def assert_one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Loading weights")]
    assert len(lines) == 1 and lines[0].startswith("evolens: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def test_verify_passes_on_a_supported_model(tiny_llama_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["verify", "--model", str(tiny_llama_dir), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    for check in verify.CHECKS:
        assert check in out
    assert "FAIL" not in out and f"all {len(verify.CHECKS)} checks passed" in out


def test_verify_exits_1_when_a_check_fails(tiny_llama_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setitem(verify.CHECKS, "always_fails", lambda *_: CheckResult.of(False, "always"))
    assert main(["verify", "--model", str(tiny_llama_dir), "--steps", "2"]) == 1
    out = capsys.readouterr().out
    assert "always_fails" in out and "FAIL" in out and "1 of" in out


def test_architecture_without_adapter_is_one_clear_line(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)
    ).save_pretrained(tmp_path)
    capsys.readouterr()  # drop the save progress bar
    assert main(["verify", "--model", str(tmp_path)]) != 0
    assert_one_line_error(
        capsys.readouterr().err, "GPT2LMHeadModel", "no evolens adapter", "adding-a-model.md"
    )


def test_unknown_model_name_is_one_clear_line(capsys) -> None:
    assert main(["verify", "--model", "nobody/no-such-model-here"]) != 0
    assert_one_line_error(capsys.readouterr().err, "nobody/no-such-model-here", "unknown model")


@pytest.mark.parametrize("content", [None, b"", b"not an image at all"])
def test_bad_image_is_one_clear_line(tiny_llama_dir: Path, tmp_path: Path, capsys, content) -> None:
    image = tmp_path / "photo.jpg"
    if content is not None:
        image.write_bytes(content)
    assert main(["verify", "--model", str(tiny_llama_dir), "--image", str(image)]) != 0
    assert_one_line_error(capsys.readouterr().err, str(image))
