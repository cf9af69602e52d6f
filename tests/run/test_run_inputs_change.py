"""A rerun on the same output after the inputs changed: added inputs are traced, removed ones leave the
analysis, changed files (by hash) are retraced, and the console says so; a folder of class subfolders runs
end to end with its groups; a run that fails before tracing leaves no empty folder behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evolens.cli import main


def picture(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (36, 36, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def run(tiny_vlm_dir: Path, images: Path, out: Path) -> list[str]:
    args = ["run", "--model", str(tiny_vlm_dir), "--images", str(images), "-p", "Describe this image."]
    args += ["--out", str(out), "--max-new-tokens", "3", "--no-keep-hidden", "--no-analyze"]
    assert main(args) == 0
    return list(pd.read_parquet(out / "trace" / "samples").sort_values("sample_id")["sample_id"])


def test_rerun_traces_added_retraces_changed_and_drops_removed_inputs(
    tiny_vlm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect: after adding an image, a rerun said "already done" for every stage and never traced it."""
    images, out = tmp_path / "photos", tmp_path / "out"
    picture(images / "animals" / "cat.png", 0)
    picture(images / "flowers" / "rose.png", 1)
    picture(images / "flowers" / "tulip.png", 2)
    assert run(tiny_vlm_dir, images, out) == ["animals/cat", "flowers/rose", "flowers/tulip"]
    groups = pd.read_parquet(out / "trace" / "samples").set_index("sample_id")["group"]
    assert groups["animals/cat"] == "animals" and groups["flowers/tulip"] == "flowers"
    before = pd.read_parquet(out / "trace" / "samples").set_index("sample_id")
    capsys.readouterr()

    assert run(tiny_vlm_dir, images, out) == ["animals/cat", "flowers/rose", "flowers/tulip"]
    assert "trace: already done (same settings, same inputs)" in capsys.readouterr().err

    picture(images / "animals" / "dog.png", 3)  # added
    (images / "flowers" / "tulip.png").unlink()  # removed
    picture(images / "flowers" / "rose.png", 4)  # changed: other pixels, same name
    assert run(tiny_vlm_dir, images, out) == ["animals/cat", "animals/dog", "flowers/rose"]
    err = capsys.readouterr().err
    assert "1 added (animals/dog), 1 removed (flowers/tulip), 1 changed (flowers/rose)" in err
    assert "2 traced now (1 because their input changed)" in err and "1 removed" in err
    after = pd.read_parquet(out / "trace" / "samples").set_index("sample_id")
    assert after.loc["flowers/rose", "image_sha256"] != before.loc["flowers/rose", "image_sha256"]
    assert after.loc["animals/cat", "text"] == before.loc["animals/cat", "text"]  # kept, not retraced
    steps = pd.read_parquet(out / "trace" / "steps")
    assert set(steps["sample_id"]) == {"animals/cat", "animals/dog", "flowers/rose"}
    assert steps.groupby("sample_id").size().to_dict() == after["n_steps"].to_dict()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "flowers/tulip" not in page and "animals/dog" in page


def test_a_failing_first_run_leaves_no_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect: a folder error stopped the run but left an empty output folder behind."""
    empty, out = tmp_path / "nothing", tmp_path / "out"
    empty.mkdir()
    assert main(["run", "--images", str(empty), "-p", "Describe.", "--out", str(out), "--quiet"]) == 2
    assert "no image files in this folder or its subfolders" in capsys.readouterr().err
    assert not out.exists()


def test_a_manifest_with_a_missing_prompt_is_one_readable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect: a missing prompt printed a Python object dump (``got DataConfig(source='folder', ...``)."""
    folder = tmp_path / "photos"
    picture(folder / "a.png", 0)
    assert main(["run", "--images", str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "DataConfig(" not in err and "PosixPath" not in err
    assert "needs at least one prompt" in err
    lines = [json.dumps({"image": "a.png"})]
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["run", "--images", str(folder / "m.jsonl"), "--out", str(tmp_path / "out2"), "--quiet"]) == 2
    assert "no prompt for a" in capsys.readouterr().err
