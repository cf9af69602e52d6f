"""POPE-style yes/no probing (Li et al., 2023): accuracy, precision, recall, F1 and yes-ratio.

Files, as POPE releases them: questions are JSON lines ``{"question_id", "image", "text", "label"}`` with
label "yes"/"no"; answers are JSON lines ``{"question_id", "text"}`` (``"answer"`` is accepted too).
An answer is read as POPE's script reads it: keep the first sentence, drop commas, and it is "no" when one
of its space-separated words is "No", "no" or "not", else "yes". "yes" is the positive class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evolens.errors import InputError
from evolens.eval.words import read_json_records

NEGATIVE_WORDS = ("No", "not", "no")


def answer_is_yes(text: str) -> bool:
    """POPE's reading of a free-form answer: False when its first sentence says no/not."""
    first = text.split(".")[0] if "." in text else text
    words = first.replace(",", "").split(" ")
    return not any(w in words for w in NEGATIVE_WORDS)


def load_pope_questions(path: str | Path) -> list[dict[str, object]]:
    """POPE's question file (JSON lines with question_id, image, text, label)."""
    records = read_json_records(path, "POPE question")
    for record in records:
        if not {"question_id", "text", "label"} <= set(record) or record["label"] not in ("yes", "no"):
            raise InputError(
                f"{path}: not a POPE question file (records need question_id, text, label yes/no)"
            )
    return records


def load_pope_answers(path: str | Path) -> dict[object, str]:
    """question_id -> answer text, from JSON lines ``{"question_id", "text"|"answer"}``."""
    answers: dict[object, str] = {}
    for record in read_json_records(path, "POPE answer"):
        text = record.get("text", record.get("answer"))
        if "question_id" not in record or not isinstance(text, str):
            raise InputError(f"{path}: not a POPE answer file (records need question_id and text)")
        answers[record["question_id"]] = text
    return answers


@dataclass(frozen=True)
class PopeResult:
    """Binary yes/no scores; precision, recall and F1 are for the "yes" class (NaN when undefined)."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def to_dict(self) -> dict[str, float | int]:
        return {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "yes_ratio": self.yes_ratio,
            "n": self.n,
        }


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def pope_scores(predicted_yes: Sequence[bool], label_yes: Sequence[bool]) -> PopeResult:
    """Scores of yes/no predictions against labels (equal lengths)."""
    if len(predicted_yes) != len(label_yes):
        raise InputError(f"{len(predicted_yes)} answers for {len(label_yes)} questions")
    if not label_yes:
        raise InputError("no yes/no questions to score")
    pairs = list(zip(predicted_yes, label_yes, strict=True))
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    tn = sum(not p and not t for p, t in pairs)
    fn = sum(not p and t for p, t in pairs)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return PopeResult(
        accuracy=(tp + tn) / len(pairs),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        yes_ratio=(tp + fp) / len(pairs),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def pope_from_files(questions_path: str | Path, answers_path: str | Path) -> PopeResult:
    """Score an answer file against a POPE question file (every question needs an answer)."""
    questions = load_pope_questions(questions_path)
    answers = load_pope_answers(answers_path)
    missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
    if missing:
        raise InputError(f"{answers_path}: no answer for {len(missing)} question(s), e.g. {missing[0]}")
    predicted = [answer_is_yes(answers[q["question_id"]]) for q in questions]
    return pope_scores(predicted, [q["label"] == "yes" for q in questions])
