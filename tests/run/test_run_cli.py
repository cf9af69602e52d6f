"""``evolens run`` from the command line: exit codes 0 / 1 / 2, failed inputs listed, ``--quiet``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from evolens.cli import main


def test_config_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data: {source: shapes}\ntrace: {batch_size: 0}\n")
    assert main(["run", "--config", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"evolens: error: {config}: trace.batch_size: input should be greater than 0 (got 0)"
    assert main(["run", "--source", "coco", "--images", str(tmp_path)]) == 2
    assert "data: source 'coco' needs data.annotations" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_out_folder_that_is_not_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("do not delete")
    args = ["run", "--source", "shapes", "--out", str(tmp_path), "--overwrite"]
    assert main(args) == 2
    assert "holds no evolens run" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "do not delete"


def test_failed_inputs_exit_1_and_are_listed(
    tiny_vlm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(images / "good.png")
    (images / "broken.png").write_bytes((images / "good.png").read_bytes()[:60])
    (images / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    args = ["run", "--model", str(tiny_vlm_dir), "--images", str(images), "--prompt", "Describe this image."]
    args += ["--out", str(out), "--max-new-tokens", "4", "--no-keep-hidden", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "report.html"), "--quiet prints only the report path"
    assert re.search(r"failed broken: .*broken\.png: corrupt or truncated image", captured.err)
    assert re.search(r"failed empty: .*empty\.jpg: empty file", captured.err)
    assert "2 input(s) failed" in captured.err
    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert sorted(f["sample_id"] for f in data["failures"]) == ["broken", "empty"]
    assert data["run"]["n_failed"] == 2 and [s["id"] for s in data["samples"]] == ["good"]
    # the same command again: nothing left to do, still exit 1 because those inputs failed
    assert main(args) == 1


def test_every_input_failing_is_an_error(tiny_vlm_dir: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "empty.png").write_bytes(b"")
    args = ["run", "--model", str(tiny_vlm_dir), "--images", str(images), "-p", "Describe.", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2  # nothing done: an input error
    assert "every input failed (1); first: " in capsys.readouterr().err


def test_a_second_run_on_the_same_folder_is_refused_before_it_touches_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ``evolens run`` on one folder would sweep each other's staged folders: the second stops at once,
    naming the holder, and the folder is as the first left it (overwrite included)."""
    from evolens.io.lock import TraceLock

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    staged = out / ".tmp-analysis.x"  # what a running stage would have in flight
    staged.mkdir()
    with TraceLock.acquire(out):
        for extra in ([], ["--overwrite"]):
            assert main(["run", "--source", "shapes", "--limit", "1", "--out", str(out), *extra]) == 2
            error = capsys.readouterr().err.strip()
            assert "being written by another process" in error and len(error.splitlines()) == 1
            assert staged.is_dir() and (out / "run.json").read_text() == "{}"
