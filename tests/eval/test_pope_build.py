"""POPE's question sets built from COCO-format annotations: the split definitions on a hand-computed case,
a synthetic file from shapes-world scenes, the real file layout, and bad files in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.cli import main
from evolens.errors import InputError
from evolens.eval.pope_build import build_pope, read_instances


def coco_file(path: Path, images: dict[str, list[str]]) -> Path:
    """A COCO instances file with these images and their objects (categories numbered by name)."""
    names = sorted({name for objects in images.values() for name in objects})
    category = {name: index + 1 for index, name in enumerate(names)}
    data = {
        "images": [{"id": i + 1, "file_name": f, "width": 64, "height": 64} for i, f in enumerate(images)],
        "annotations": [
            {"id": n, "image_id": i + 1, "category_id": category[name], "bbox": [0, 0, 1, 1]}
            for i, objects in enumerate(images.values())
            for n, name in enumerate(objects)
        ],
        "categories": [{"id": index, "name": name, "supercategory": "x"} for name, index in category.items()],
    }
    path.write_text(json.dumps(data))
    return path


HAND = {
    "a.jpg": ["cat", "dog"],
    "b.jpg": ["cat", "dog", "car"],
    "c.jpg": ["cat", "bus"],
    "d.jpg": ["car", "bus", "cup"],
    "e.jpg": ["cup"],
}
"""Image frequency: cat 3, car 2, bus 2, dog 2, cup 2. Co-occurrence with cat: dog 2, car 1, bus 1, cup 0;
with dog: cat 2, car 1; with car: bus 1, cat 1, cup 1, dog 1."""


def test_the_splits_follow_pope_on_a_hand_computed_case(tmp_path: Path) -> None:
    objects = read_instances(coco_file(tmp_path / "hand.json", HAND))
    sets = build_pope(objects, per_image=2, seed=0)
    assert sets.left_out == ["e.jpg"]
    by_image = {
        split: {
            image: [
                q["text"].removeprefix("Is there a ").removesuffix(" in the image?")
                for q in lines
                if q["image"] == image and q["label"] == "no"
            ]
            for image in HAND
        }
        for split, lines in sets.questions.items()
    }
    # popular: the most frequent absent objects (ties by name): for a.jpg (cat, dog): bus 2, car 2 -> bus, car
    assert by_image["popular"]["a.jpg"] == ["bus", "car"]
    assert by_image["popular"]["c.jpg"] == ["car", "cup"]  # car 2, cup 2, dog 2 -> car, cup
    # adversarial: per asked object, the absent one co-occurring most with it
    asked = {
        image: [
            q["text"][11:-14]
            for q in sets.questions["adversarial"]
            if q["image"] == image and q["label"] == "yes"
        ]
        for image in HAND
    }
    expected = {
        "cat": "car",
        "dog": "car",
    }  # for a.jpg: cat -> car (1; bus 1 too: car first by name), dog -> car
    first = asked["a.jpg"][0]
    assert by_image["adversarial"]["a.jpg"][0] == expected[first]
    assert by_image["adversarial"]["a.jpg"][1] != by_image["adversarial"]["a.jpg"][0]
    for split, lines in sets.questions.items():
        assert [q["question_id"] for q in lines] == list(range(1, len(lines) + 1)), split
        for image in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
            mine = [q for q in lines if q["image"] == image]
            assert [q["label"] for q in mine] == ["yes", "no", "yes", "no"]
            yes = {q["text"] for q in mine if q["label"] == "yes"}
            no = [q["text"] for q in mine if q["label"] == "no"]
            assert all(text[11:-14] in HAND[image] for text in yes)
            assert len(set(no)) == len(no) and not any(t[11:-14] in HAND[image] for t in no)
    assert build_pope(objects, 2, seed=0).questions == sets.questions  # seeded


def test_a_shapes_world_coco_file_and_the_command(tmp_path: Path) -> None:
    from evolens.data.shapes.world import sample_scene

    scenes = {
        f"scene-{seed}.png": [f"{o.color} {o.shape}" for o in sample_scene(40_000_000 + seed).objects]
        for seed in range(60)
    }
    path = coco_file(tmp_path / "shapes.json", scenes)
    assert (
        main(
            [
                "hallucination",
                "pope-build",
                "--annotations",
                str(path),
                "--out",
                str(tmp_path / "pope"),
                "--per-image",
                "2",
            ]
        )
        == 0
    )
    for split in ("random", "popular", "adversarial"):
        lines = [
            json.loads(line) for line in (tmp_path / "pope" / f"pope_{split}.jsonl").read_text().splitlines()
        ]
        assert lines and set(lines[0]) == {"question_id", "image", "text", "label"}
        assert sum(q["label"] == "yes" for q in lines) == sum(q["label"] == "no" for q in lines)
        for question in lines:
            present = question["text"][11:-14] in scenes[question["image"]]
            assert present == (question["label"] == "yes")


def test_a_file_that_is_not_coco_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="not COCO instance annotations"):
        read_instances(bad)
    assert main(["hallucination", "pope-build", "--annotations", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
