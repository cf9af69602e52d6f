"""Dataset sources: each format's loader on a small fixture in that format, and the shared selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from evolens.data.config import DEFAULT_DESCRIBE_PROMPT, DataConfig
from evolens.data.rows import prompt_tag
from evolens.data.sources import load_rows, manifest_text
from evolens.data.sources.local import read_manifest
from evolens.errors import InputError, UsageError


def make_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        path = folder / name
        Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_folder_pairs_each_image_with_each_prompt(tmp_path: Path) -> None:
    make_images(tmp_path, ["b.png", "a.jpg", "c.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    rows = load_rows(DataConfig(path=tmp_path, prompts=["Describe.", "What colour?"]), tmp_path)
    assert [r.image.name for r in rows] == ["a.jpg", "a.jpg", "b.png", "b.png", "c.png", "c.png"]
    assert [r.prompt for r in rows[:2]] == ["Describe.", "What colour?"]
    assert rows[0].sample_id == f"a--{prompt_tag('Describe.')}"
    assert len({r.sample_id for r in rows}) == 6


def test_limit_shuffle_seed_are_reproducible_and_pick_distinct_images(tmp_path: Path) -> None:
    make_images(tmp_path, [f"img{i:02d}.png" for i in range(20)])

    def pick(**selection: object) -> list[str]:
        rows = load_rows(DataConfig(path=tmp_path, prompts=["p"], **selection), tmp_path)
        return [row.image.name for row in rows]

    assert pick(limit=3) == ["img00.png", "img01.png", "img02.png"]
    shuffled = pick(limit=5, shuffle=True, seed=1)
    assert shuffled == pick(limit=5, shuffle=True, seed=1)
    assert shuffled != pick(limit=5, shuffle=True, seed=2)
    assert len(set(shuffled)) == 5 and shuffled != sorted(shuffled)
    assert pick(shuffle=True, seed=1)[:5] == shuffled, "limit takes a prefix of the same shuffle"


def test_same_stem_gets_unique_ids(tmp_path: Path) -> None:
    make_images(tmp_path, ["cat.png", "cat.jpg"])
    rows = load_rows(DataConfig(path=tmp_path, prompts=["p"]), tmp_path)
    assert [r.sample_id for r in rows] == ["cat", "cat-2"]


def test_jsonl_manifest_relative_paths_ids_and_ground_truth(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", ["x.png", "y.png"])
    lines = [
        {"id": "first", "image": "imgs/x.png", "prompt": "Describe.", "ground_truth": {"objects": ["cat"]}},
        {"image": "imgs/y.png", "prompt": "Colour?"},
        {"image": None, "prompt": "Text only."},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    rows = load_rows(DataConfig(path=manifest), tmp_path)
    assert [r.sample_id for r in rows] == ["first", "y", "line-3"]
    assert rows[0].image == (tmp_path / "imgs" / "x.png").resolve() and rows[2].image is None
    assert rows[0].ground_truth == {"objects": ["cat"]} and rows[1].prompt == "Colour?"
    # the manifest a run writes reads back as the same rows (absolute paths)
    written = tmp_path / "out.jsonl"
    written.write_text(manifest_text(rows))
    assert load_rows(DataConfig(path=written), tmp_path) == rows


def test_bad_manifest_lines_name_the_line_and_are_usage_errors(tmp_path: Path) -> None:
    """Defect: a manifest parse error exited 1 ("some inputs failed") while an empty folder exited 2."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.png", "prompt": "p"}\n{oops\n')
    with pytest.raises(UsageError, match=r"m.jsonl:2: not valid JSON") as raised:
        read_manifest(manifest)
    assert raised.value.exit_code == 2


def test_a_raw_line_separator_inside_a_json_string_is_not_a_line_break(tmp_path: Path) -> None:
    """Defect: a manifest line holding a raw U+2028 (valid JSON) failed as "not valid JSON"."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.png", "prompt": "Describe.\u2028Be brief."}\n', encoding="utf-8")
    rows = load_rows(DataConfig(path=manifest), tmp_path)
    assert [row.prompt for row in rows] == ["Describe.\u2028Be brief."]
    written = tmp_path / "again.jsonl"
    written.write_text(manifest_text(rows), encoding="utf-8")  # evolens' own manifest reads back too
    assert load_rows(DataConfig(path=written), tmp_path) == rows


def test_ids_are_kept_verbatim(tmp_path: Path) -> None:
    """Defect: ids were rewritten silently (``<script>alert(5)</script>`` -> ``script_alert_5_script``)."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    hostile = "<script>alert(5)</script> ü/x"
    manifest.write_text(json.dumps({"id": hostile, "image": "a.png", "prompt": "p"}) + "\n")
    assert [row.sample_id for row in load_rows(DataConfig(path=manifest), tmp_path)] == [hostile]


def test_class_subfolders_become_groups_in_natural_order(tmp_path: Path) -> None:
    """Defect: a folder of class subfolders stopped with "no image files in this folder"."""
    make_images(tmp_path / "flowers", ["flower10.jpg", "flower2.jpg"])
    make_images(tmp_path / "animals" / "wild", ["lion.png"])
    make_images(tmp_path, ["top.png"])
    make_images(tmp_path / ".cache", ["thumb.png"])
    rows = load_rows(DataConfig(path=tmp_path, prompts=["p"]), tmp_path)
    assert [(row.sample_id, row.group) for row in rows] == [
        ("animals/wild/lion", "animals/wild"),
        ("flowers/flower2", "flowers"),
        ("flowers/flower10", "flowers"),
        ("top", None),
    ]
    assert load_rows(DataConfig(path=tmp_path, prompts=["p"], limit=2), tmp_path)[1].group == "flowers"


def coco_fixture(root: Path) -> tuple[Path, Path, Path]:
    """A tiny instances + captions pair in the official COCO layout; image 3 is not on disk."""
    images = root / "val2014"
    make_images(images, ["COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg"])
    listing = [
        {"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "height": 8, "width": 8} for i in (2, 1, 3)
    ]
    instances = {
        "images": listing,
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 18, "bbox": [0, 0, 1, 1]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 12, "image_id": 2, "category_id": 18, "bbox": [0, 0, 1, 1]},
            {"id": 13, "image_id": 1, "category_id": 18, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}, {"id": 18, "name": "dog"}],
    }
    captions = {"images": listing, "annotations": [{"id": 1, "image_id": 2, "caption": " A dog on grass. "}]}
    (root / "instances.json").write_text(json.dumps(instances))
    (root / "captions.json").write_text(json.dumps(captions))
    return images, root / "instances.json", root / "captions.json"


def test_coco_instances_and_captions(tmp_path: Path) -> None:
    images, instances, captions = coco_fixture(tmp_path)
    rows = load_rows(DataConfig(source="coco", path=images, annotations=instances), tmp_path)
    assert [r.sample_id for r in rows] == ["coco-1", "coco-2"], "sorted by id; the missing image is left out"
    assert rows[0].prompt == DEFAULT_DESCRIBE_PROMPT
    assert rows[0].ground_truth["objects"] == ["dog", "person"] and rows[1].ground_truth["objects"] == ["dog"]
    rows = load_rows(DataConfig(source="coco", path=images, annotations=captions, limit=1), tmp_path)
    assert [r.sample_id for r in rows] == ["coco-1"] and rows[0].ground_truth["captions"] == []
    rows = load_rows(DataConfig(source="coco", path=images, annotations=captions), tmp_path)
    assert rows[1].ground_truth["captions"] == ["A dog on grass."]


def test_coco_wrong_file_and_empty_folder(tmp_path: Path) -> None:
    images, instances, _ = coco_fixture(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a COCO annotation file"):
        load_rows(DataConfig(source="coco", path=images, annotations=tmp_path / "list.json"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="none of the 3 images"):
        load_rows(DataConfig(source="coco", path=tmp_path / "empty", annotations=instances), tmp_path)


def test_amber_queries(tmp_path: Path) -> None:
    make_images(tmp_path / "image", ["AMBER_1.jpg", "AMBER_2.jpg"])
    queries = [
        {"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
        {"id": 2, "image": "AMBER_2.jpg", "query": "Describe this image."},
        {"id": 1005, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"},
    ]
    (tmp_path / "query_all.json").write_text(json.dumps(queries))
    config = DataConfig(source="amber", path=tmp_path / "image", annotations=tmp_path / "query_all.json")
    rows = load_rows(config, tmp_path)
    assert [r.sample_id for r in rows] == ["amber-1", "amber-2", "amber-1005"]
    assert rows[2].prompt == "Is there a dog in this image?"
    assert rows[2].ground_truth == {"source": "amber", "id": 1005, "task": "discriminative"}
    assert len(load_rows(config.model_copy(update={"limit": 2}), tmp_path)) == 2
    (tmp_path / "bad.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(InputError, match="entry 0 is not an AMBER query"):
        load_rows(config.model_copy(update={"annotations": tmp_path / "bad.json"}), tmp_path)


def test_shapes_world_renders_reproducible_scenes_with_ground_truth(tmp_path: Path) -> None:
    rows = load_rows(DataConfig(source="shapes", limit=2, seed=5), tmp_path)
    assert [r.sample_id.split("--")[0] for r in rows] == ["shapes-5", "shapes-5", "shapes-6", "shapes-6"]
    assert rows[0].image.is_file() and rows[0].image.parent == tmp_path / "shapes"
    first_bytes = rows[0].image.read_bytes()
    again = load_rows(DataConfig(source="shapes", limit=2, seed=5), tmp_path / "other")
    assert again[0].image.read_bytes() == first_bytes
    assert rows[0].ground_truth["seed"] == 5 and rows[0].ground_truth["objects"]
