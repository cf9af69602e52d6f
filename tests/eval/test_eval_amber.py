"""AMBER's generative metrics on a fixture in AMBER's file formats; expected values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.errors import InputError
from evolens.eval.amber import AmberData, amber_generative, load_amber_queries, load_amber_responses

AMBER = Path(__file__).parent / "fixtures" / "amber"


@pytest.fixture(scope="module")
def data() -> AmberData:
    return AmberData.load(AMBER)


def test_discriminative_entries_are_ignored(data: AmberData) -> None:
    assert sorted(data.annotations) == [1, 2, 4]
    assert [q["id"] for q in load_amber_queries(AMBER / "query" / "query_generative.json")] == [1, 2, 4]


def test_generative_metrics(data: AmberData) -> None:
    responses = load_amber_responses(AMBER / "responses.json")
    result = amber_generative(responses.items(), data)
    one, two, four = result.responses
    # 1: man->person, lake, sky, trees->forest covered; dog, clouds hallucinated (both on the hallu list);
    #    "light" is a safe word: counted as an object word, never as a hallucination
    assert one.object_words == ["man", "lake", "sky", "tree", "dog", "light", "cloud"]
    assert one.hallucinated == ["dog", "cloud"]
    assert sorted(one.covered) == ["forest", "lake", "person", "sky"]
    assert sorted(one.hallu_named) == ["cloud", "dog"]
    # 2: dog covered, sand->beach covered, water hallucinated (associated with "sea", a hallu object)
    assert two.hallucinated == ["water"] and two.hallu_named == ["sea"]
    assert four.hallucinated == [] and four.covered == ["car"]
    assert result.chair == pytest.approx(3 / 11)
    assert result.cover == pytest.approx(7 / 8)
    assert result.hal == pytest.approx(2 / 3)
    assert result.cog == pytest.approx(3 / 9)


def test_wrong_formats(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text(json.dumps({"1": {"truth": []}}))
    (tmp_path / "relation.json").write_text("{}")
    with pytest.raises(InputError, match="not an AMBER annotations file"):
        AmberData.load(tmp_path)
    with pytest.raises(InputError, match="not an AMBER responses file"):
        load_amber_responses(AMBER / "query" / "query_generative.json")
    with pytest.raises(InputError, match="no generative AMBER annotation"):
        amber_generative([(3, "a dog")], AmberData.load(AMBER))
