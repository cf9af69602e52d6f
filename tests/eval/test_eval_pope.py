"""POPE scores on a fixture in POPE's JSON-lines formats; expected counts worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evolens.errors import InputError
from evolens.eval.pope import answer_is_yes, pope_from_files, pope_scores

POPE = Path(__file__).parent / "fixtures" / "pope"


@pytest.mark.parametrize(
    ("text", "yes"),
    [
        ("Yes, there is a dog.", True),
        ("No, there is no person.", False),
        ("Not really, no.", False),  # "no" after the comma is dropped
        ("I do not see a cat. Yes.", False),  # only the first sentence counts
        ("There is a car.", True),
        ("Nope", True),  # POPE's rule: only No / no / not are negative
    ],
)
def test_answer_reading(text: str, yes: bool) -> None:
    assert answer_is_yes(text) is yes


def test_scores_from_files() -> None:
    result = pope_from_files(POPE / "coco_pope_random.json", POPE / "answers.jsonl")
    # labels  y y y n n n ; predictions y n n n n y -> TP 1, FN 2, TN 2, FP 1
    assert (result.tp, result.fn, result.tn, result.fp) == (1, 2, 2, 1)
    assert result.accuracy == pytest.approx(3 / 6)
    assert result.precision == pytest.approx(1 / 2)
    assert result.recall == pytest.approx(1 / 3)
    assert result.f1 == pytest.approx(0.4)
    assert result.yes_ratio == pytest.approx(2 / 6)


def test_undefined_precision_is_nan() -> None:
    result = pope_scores([False, False], [True, False])
    assert math.isnan(result.precision) and result.recall == 0 and result.accuracy == 0.5


def test_wrong_formats(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a POPE question file"):
        pope_from_files(POPE / "answers.jsonl", POPE / "answers.jsonl")
    partial = tmp_path / "answers.jsonl"
    partial.write_text('{"question_id": 1, "text": "Yes"}\n')
    with pytest.raises(InputError, match="no answer for 5"):
        pope_from_files(POPE / "coco_pope_random.json", partial)
