"""Where the right answer loses, on the demo's yes/no questions about shapes-world scenes: the margin curve,
the final answers and, for each wrong one, the last layer at which the right answer still led."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evolens.cli import main
from evolens.eval.answer_margin import _last_lead
from tests.eval.test_pope_build import coco_file


def test_the_last_layer_the_correct_answer_led() -> None:
    assert _last_lead(np.array([-1.0, 0.5, 0.2, -0.3])) == 2
    assert _last_lead(np.array([-1.0, -0.5])) is None
    assert _last_lead(np.array([0.1, 0.2])) == 1


def test_margins_on_shapes_world_pope_questions(tmp_path: Path) -> None:
    from evolens.data.shapes.render import render_scene
    from evolens.data.shapes.world import sample_scene

    images = tmp_path / "images"
    images.mkdir()
    scenes = {}
    for seed in range(4):
        scene = sample_scene(40_000_100 + seed, n_objects=2)
        render_scene(scene).save(images / f"scene-{seed}.png")
        scenes[f"scene-{seed}.png"] = [f"{o.color} {o.shape}" for o in scene.objects]
    pope = tmp_path / "pope"
    annotations = coco_file(tmp_path / "shapes.json", scenes)
    assert (
        main(
            [
                "hallucination",
                "pope-build",
                "--annotations",
                str(annotations),
                "--out",
                str(pope),
                "--per-image",
                "1",
            ]
        )
        == 0
    )
    out = tmp_path / "margins"
    args = ["hallucination", "margins", "--model", "demo", "--images", str(images), "--out", str(out)]
    assert main([*args, "--questions", str(pope / "pope_adversarial.jsonl"), "--n-boot", "50"]) == 0
    result = json.loads((out / "margins.json").read_text())["splits"]["adversarial"]
    assert result["n_questions"] == 8 and result["n_images"] == 4
    assert len(result["margin"]["mean"]) == 31  # lens layers 0..30
    wrong = result["wrong"]
    assert wrong["never_led"] + len(wrong["last_layer_correct_led"]) == wrong["n"]
    assert abs(result["accuracy"] - (1 - wrong["n"] / 8)) < 1e-9
    assert (out / "adversarial" / "yes" / "meta.json").is_file() and (
        out / "adversarial" / "no" / "meta.json"
    ).is_file()
