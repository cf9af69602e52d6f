"""The demo image set and ``evolens demo``."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from evolens.cli import main
from evolens.data.images import load_image
from evolens.data.shapes import Scene, render_scene
from evolens.data.shapes.world import sample_scene
from evolens.models.demo.images import (
    DEMO_SCENE_SEED_BASE,
    N_DEMO_SCENES,
    SKIMAGE_PHOTOS,
    materialize_demo_images,
    read_demo_manifest,
)


def test_demo_image_set_is_materialised_with_ground_truth(tmp_path: Path) -> None:
    manifest = materialize_demo_images(tmp_path)
    entries = read_demo_manifest(manifest)
    assert len(entries) == N_DEMO_SCENES + len(SKIMAGE_PHOTOS)
    assert len({e["id"] for e in entries}) == len(entries)
    scenes = [e for e in entries if e["ground_truth"] is not None]
    assert len(scenes) == N_DEMO_SCENES
    for entry in scenes:
        scene = Scene.from_dict(entry["ground_truth"])
        assert scene.seed >= DEMO_SCENE_SEED_BASE
        assert scene == sample_scene(scene.seed, n_objects=len(scene.objects))
        assert list(Image.open(entry["image"]).getdata()) == list(render_scene(scene).getdata())
    for entry in entries:
        assert load_image(entry["image"]).mode == "RGB"
        assert entry["prompt"]
    raw = json.loads(manifest.read_text().splitlines()[0])
    assert not Path(raw["image"]).is_absolute(), "paths in the manifest are relative to its folder"


def test_demo_command_lists_bad_images_and_processes_the_rest(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    render_scene(sample_scene(DEMO_SCENE_SEED_BASE, n_objects=1)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["demo", "--images", str(folder), "--out", str(out), "--max-new-tokens", "8"])
    captured = capsys.readouterr().out
    assert code == 1
    assert "broken.png" in captured and "empty.jpg" in captured
    results = [json.loads(line) for line in (out / "demo-results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["good"]
    assert results[0]["caption"] and results[0]["color_answer"]
    assert "results:" in captured


def test_demo_command_rejects_a_missing_folder(tmp_path: Path, capsys) -> None:
    code = main(["demo", "--images", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2
    assert "not a folder" in capsys.readouterr().err
