"""CHAIR on a fixture in the MSCOCO 2014 formats; expected values computed by hand in the comments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.errors import InputError
from evolens.eval.chair import (
    CocoSynonyms,
    caption_objects,
    chair,
    load_coco_objects,
    load_generated_captions,
)

COCO = Path(__file__).parent / "fixtures" / "coco"


@pytest.fixture(scope="module")
def synonyms() -> CocoSynonyms:
    return CocoSynonyms.load()


def test_synonym_list_has_the_80_coco_categories(synonyms: CocoSynonyms) -> None:
    assert len(synonyms.groups) == 80
    categories = [g[0] for g in synonyms.groups]
    assert {"person", "dining table", "tv", "hair drier", "potted plant", "cell phone"} <= set(categories)
    assert synonyms.category_of["motor bike"] == "motorcycle"  # listed with a double space in the source
    assert synonyms.category_of["puppy"] == "dog"


def test_caption_rules(synonyms: CocoSynonyms) -> None:
    def categories(text: str) -> list[str]:
        return [m.category for m in caption_objects(text, synonyms)]

    assert categories("Two puppies and three men.") == ["dog", "person"]
    assert categories("A baby elephant near a bus.") == ["elephant", "bus"]  # not "person"; bus stays bus
    assert categories("The toilet seat is up.") == ["toilet"]
    assert categories("A seat next to the toilet.") == ["toilet"]  # seat dropped when toilet is there
    assert categories("He eats a hot dog.") == ["hot dog"]
    assert categories("A passenger jet.") == ["airplane"]
    assert categories("Knives, forks and wine glasses.") == ["knife", "fork", "wine glass"]


def test_chair_with_instances_and_captions(synonyms: CocoSynonyms) -> None:
    objects = load_coco_objects(COCO / "instances_val2014.json", COCO / "captions_val2014.json", synonyms)
    # 101: person, dog, frisbee; 102: toilet (+ toilet, sink from its human caption); 103: chair, dining
    # table; 104: bird
    assert objects == {
        101: {"person", "dog", "frisbee"},
        102: {"toilet", "sink"},
        103: {"chair", "dining table"},
        104: {"bird"},
    }
    result = chair(load_generated_captions(COCO / "generated_captions.jsonl"), objects, synonyms)
    # mentions: 101 person dog car* | 102 toilet sink | 103 chair dining-table hot-dog* | 104 bird bench*
    assert [c.hallucinated for c in result.captions] == [["car"], [], ["hot dog"], ["bench"]]
    assert result.chair_s == pytest.approx(3 / 4)
    assert result.chair_i == pytest.approx(3 / 10)
    assert result.recall == pytest.approx(7 / 8)  # 2 of 3, 2 of 2, 2 of 2, 1 of 1


def test_chair_with_instances_only(synonyms: CocoSynonyms) -> None:
    objects = load_coco_objects(COCO / "instances_val2014.json", synonyms=synonyms)
    result = chair(load_generated_captions(COCO / "generated_captions.jsonl"), objects, synonyms)
    # without the human caption, "sink" in 102 is hallucinated too
    assert result.chair_s == pytest.approx(4 / 4)
    assert result.chair_i == pytest.approx(4 / 10)
    assert result.recall == pytest.approx(6 / 7)


def test_wrong_formats_are_one_line_input_errors(tmp_path: Path) -> None:
    captions_as_instances = COCO / "captions_val2014.json"
    with pytest.raises(InputError, match="not an MSCOCO instances annotation file"):
        load_coco_objects(captions_as_instances)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="not a JSON"):
        load_coco_objects(broken)
    with pytest.raises(InputError, match="no such"):
        load_coco_objects(tmp_path / "missing.json")
    records = tmp_path / "caps.json"
    records.write_text(json.dumps([{"id": 1, "text": "a dog"}]))
    with pytest.raises(InputError, match="image_id"):
        load_generated_captions(records)


def test_chair_from_trace_ground_truth() -> None:
    """The ``coco`` section of a trace's hallucination record: objects from the ground truth the MSCOCO
    data source stores (category names, plus objects named by reference captions)."""
    from evolens.eval.trace_metrics import coco_section

    rows = [
        ("Describe.", "A man walks two dogs near a car.", {"source": "coco", "objects": ["person", "dog"]}),
        (
            "Describe.",
            "A sink.",
            {"source": "coco", "objects": ["toilet"], "captions": ["A toilet and a sink."]},
        ),
    ]
    section = coco_section(rows)
    assert section == {
        "chair_s": 0.5,
        "chair_i": pytest.approx(1 / 4),
        "recall": pytest.approx(3 / 4),
        "n": 2,
    }
