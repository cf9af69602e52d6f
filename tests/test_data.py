"""Turning ``images``/``--images`` and ``prompt`` into samples with stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from evolens.data.resolve import Sample, resolve_samples
from evolens.errors import UsageError


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    for name, colour in (("red.png", (255, 0, 0)), ("blue.jpg", (0, 0, 255))):
        Image.new("RGB", (8, 8), colour).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_single_file_and_list(image_folder: Path) -> None:
    folder = resolve_samples(image_folder, "What colour?")
    assert [s.sample_id for s in folder] == ["blue", "red"]
    assert all(s.prompt == "What colour?" and s.image is not None for s in folder)
    assert resolve_samples(image_folder / "red.png", "Q")[0].image == image_folder / "red.png"
    listed = resolve_samples([image_folder / "red.png", image_folder / "missing.png"], "Q")
    assert [s.sample_id for s in listed] == ["red", "missing"]  # the missing file will fail alone


def test_ids_are_stable_and_distinct_per_prompt(image_folder: Path) -> None:
    first = resolve_samples(image_folder, ["What colour?", "What shape?"])
    again = resolve_samples(image_folder, ["What colour?", "What shape?"])
    assert [s.sample_id for s in first] == [s.sample_id for s in again]
    assert len({s.sample_id for s in first}) == 4


def test_manifest_paths_are_relative_to_it(image_folder: Path) -> None:
    manifest = image_folder / "data.jsonl"
    lines = [
        {"image": "red.png", "prompt": "Colour?", "id": "r1", "ground_truth": {"colour": "red"}},
        {"image": "blue.jpg", "prompt": "Shape?"},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    samples = resolve_samples(manifest)
    assert samples[0] == Sample("r1", (image_folder / "red.png").resolve(), "Colour?")
    assert samples[0].ground_truth == {"colour": "red"}
    assert samples[1].sample_id == "blue" and samples[1].prompt == "Shape?"
    assert [s.prompt for s in resolve_samples(manifest, "Override?")] == ["Override?", "Override?"]


def test_text_only_prompts() -> None:
    samples = resolve_samples(None, ["Name a colour.", "Name a fruit."])
    assert all(s.image is None for s in samples)
    assert len({s.sample_id for s in samples}) == 2


def test_missing_prompt_or_inputs_are_usage_errors(image_folder: Path) -> None:
    with pytest.raises(UsageError, match="give a prompt"):
        resolve_samples(image_folder)
    with pytest.raises(UsageError, match="nothing to trace"):
        resolve_samples(None)
    with pytest.raises(UsageError, match="empty prompt"):
        resolve_samples(image_folder, "  ")
    duplicate = [Sample("a", None, "x"), Sample("a", None, "y")]
    with pytest.raises(UsageError, match="share the id 'a'"):
        resolve_samples(duplicate)
