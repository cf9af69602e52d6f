"""Shapes-world hallucination against exactly known scenes; expected values worked out by hand."""

from __future__ import annotations

import pytest

from evolens.data.shapes import Background, Scene, ShapeObject
from evolens.eval.shapes import answer_correct, score_description, shapes_hallucination


def shape(kind: str, color: str, position: str = "center") -> ShapeObject:
    return ShapeObject(kind, color, "large", position, (0.5, 0.5), 0.1, (0, 0, 0))


RED_CIRCLE_BLUE_STAR = Scene(1, Background("white", "plain"), (shape("circle", "red"), shape("star", "blue")))
GREEN_SQUARE = Scene(2, Background("black", "plain"), (shape("square", "green"),))


def test_mention_verdicts() -> None:
    text = "There are two shapes. A red circle is on the left. A green star is at the top. I see a triangle."
    score = score_description(text, RED_CIRCLE_BLUE_STAR)
    assert [v.verdict for v in score.verdicts] == ["faithful", "attribute", "object"]
    assert score.n_recalled == 1 and score.count_correct is True


def test_corpus_rates() -> None:
    texts = [
        "A red circle and a blue star.",  # 2 faithful
        "A large green square. A small green circle.",  # 1 faithful, 1 object hallucination
    ]
    result = shapes_hallucination(texts, [RED_CIRCLE_BLUE_STAR, GREEN_SQUARE])
    assert result.chair_s == pytest.approx(1 / 2)
    assert result.chair_i == pytest.approx(1 / 4)
    assert result.object_hallucination == pytest.approx(1 / 4)
    assert result.attribute_hallucination == 0
    assert result.precision == pytest.approx(3 / 4)
    assert result.recall == pytest.approx(3 / 3)


def test_short_answers() -> None:
    assert answer_correct("color", "The shape is green.", GREEN_SQUARE)
    assert not answer_correct("shape", "It is a circle.", GREEN_SQUARE)
    assert answer_correct("count", "There are two shapes.", RED_CIRCLE_BLUE_STAR)
