"""Where the right answer loses, on the demo's yes/no questions about shapes-world scenes: the margin curve,
the final answers and, for each wrong one, the last layer at which the right answer still led."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


def _answer_trace(directory: Path, questions: list[tuple[str, str, str, str]], final: list[float]) -> Path:
    """A scored-answer trace through the real store: one step per question, p(answer) = 0.5 at every layer
    but the last, ``final`` there. ``questions``: (id, image, label, asked object)."""
    from evolens.io.store import SampleRecord, TraceWriter, write_part

    records = []
    for (qid, image, label, name), p_last in zip(questions, final, strict=True):
        prob = np.array([[0.5, 0.5, p_last]], dtype=np.float32)
        zeros = np.zeros_like(prob)
        metrics = {
            "prob": prob,
            "rank": zeros.astype(np.int32),
            "entropy": zeros,
            "jsd_next": zeros[:, :2],
            "jsd_last": zeros,
            "kl_last": zeros,
            "paper_js": None,
            "topk_ids": np.zeros((1, 3, 1), dtype=np.int32),
            "topk_probs": prob[..., None],
        }
        truth = {"label": label, "object": name}
        records.append(
            SampleRecord(qid, image, f"Is there a {name} in the image?", "", [1], ["x"], metrics, truth)
        )
    meta = {"model": "synthetic", "revision": None, "dtype": "float32", "lens": "normed", "top_k": 1}
    TraceWriter.open(directory, {**meta, "seed": 0, "n_layers": 2, "paper_js": False}).close()
    write_part(directory, "part-00000.parquet", records)
    return directory


def test_absent_yes_rate_by_object_by_hand(tmp_path: Path) -> None:
    from evolens.eval.answer_margin import asked_object, margins

    assert asked_object("Is there a blue square in the image?") == "blue square"
    assert asked_object("Is there an apple in the image?") == "apple"
    assert asked_object("What is this?") is None
    questions = [
        ("q1", "a.png", "yes", "red circle"),
        ("q2", "a.png", "no", "blue square"),
        ("q3", "b.png", "no", "blue square"),
        ("q4", "b.png", "no", "green star"),
    ]
    yes = _answer_trace(tmp_path / "yes", questions, [0.9, 0.7, 0.2, 0.6])
    no = _answer_trace(tmp_path / "no", questions, [0.1, 0.3, 0.8, 0.4])
    result = margins(yes, no, n_boot=200)
    # said yes to q1 (right), q2 (wrong), q4 (wrong); no to q3 (right)
    assert result["accuracy"] == 0.5 and result["yes_rate"] == 0.75
    assert result["absent_yes_rate"]["mean"] == pytest.approx(2 / 3) and result["absent_yes_rate"]["n"] == 3
    assert result["absent_yes_by_object"] == {
        "blue square": {"n": 2, "yes": 1},
        "green star": {"n": 1, "yes": 1},
    }
    assert result["wrong"]["n"] == 2 and result["wrong"]["last_layer_correct_led"] == []  # tied at 0.5 before


def test_a_stored_zero_probability_gives_a_finite_margin(tmp_path: Path) -> None:
    """float32 traces store p < 1.4e-45 as 0: the margin stays finite (log of float32's smallest value)."""
    from evolens.eval.answer_margin import FLOOR, margins

    questions = [("q1", "a.png", "no", "blue square")]
    yes = _answer_trace(tmp_path / "yes", questions, [0.0])
    no = _answer_trace(tmp_path / "no", questions, [0.5])
    result = margins(yes, no, n_boot=20)
    assert result["margin"]["mean"][2] == pytest.approx(np.log(0.5) - np.log(FLOOR))
    assert all(value is not None for value in result["margin"]["mean"])
