"""Hallucination and accuracy on the shapes world, where every scene's objects are known exactly.

A description's object mentions come from ``shapes.parse_description``. A mention is faithful when
an object of the scene has its shape and (if the mention names one) its colour; otherwise it is
hallucinated: an *object* hallucination when no object has that shape, an *attribute* hallucination when
one does but not in that colour. CHAIR-style rates follow: CHAIR_i = hallucinated mentions / mentions,
CHAIR_s = descriptions with any hallucinated mention / descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from evolens.data.shapes import (
    COLORS,
    SHAPES,
    Scene,
    parse_color,
    parse_count,
    parse_description,
    parse_shape,
    parse_yes_no,
)
from evolens.data.shapes.parse import ParsedObject
from evolens.data.shapes.text import COLOR_PROMPTS, COUNT_PROMPTS, DESCRIBE_PROMPTS, SHAPE_PROMPTS


@dataclass(frozen=True)
class MentionVerdict:
    """One object mention and whether the scene supports it ("faithful", "object" or "attribute")."""

    mention: ParsedObject
    verdict: str

    @property
    def hallucinated(self) -> bool:
        return self.verdict != "faithful"


def judge_mention(mention: ParsedObject, scene: Scene) -> MentionVerdict:
    """Faithful, or which kind of hallucination (see the module docstring)."""
    same_shape = [o for o in scene.objects if o.shape == mention.shape]
    if not same_shape:
        return MentionVerdict(mention, "object")
    if mention.color is not None and all(o.color != mention.color for o in same_shape):
        return MentionVerdict(mention, "attribute")
    return MentionVerdict(mention, "faithful")


@dataclass
class DescriptionScore:
    """Verdicts for one description, plus how many scene objects it names correctly."""

    verdicts: list[MentionVerdict]
    n_objects: int
    n_recalled: int
    count_correct: bool | None

    @property
    def n_hallucinated(self) -> int:
        return sum(v.hallucinated for v in self.verdicts)


def score_description(text: str, scene: Scene) -> DescriptionScore:
    """Judge every mention of ``text`` against ``scene``; an object is recalled when named with its colour."""
    verdicts = [judge_mention(m, scene) for m in parse_description(text)]
    recalled = sum(
        any(v.mention.shape == o.shape and v.mention.color == o.color for v in verdicts)
        for o in scene.objects
    )
    count = parse_count(text)
    return DescriptionScore(
        verdicts, len(scene.objects), recalled, None if count is None else count == len(scene.objects)
    )


@dataclass(frozen=True)
class ShapesResult:
    """Corpus rates over descriptions (fractions; NaN where there is nothing to divide by)."""

    chair_s: float
    chair_i: float
    object_hallucination: float
    attribute_hallucination: float
    precision: float
    recall: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def shapes_hallucination(texts: Sequence[str], scenes: Sequence[Scene]) -> ShapesResult:
    """CHAIR_s / CHAIR_i, object and attribute hallucination rates, precision and recall."""
    scores = [score_description(t, s) for t, s in zip(texts, scenes, strict=True)]
    verdicts = [v for s in scores for v in s.verdicts]
    n_mentions = len(verdicts)
    return ShapesResult(
        chair_s=_ratio(sum(s.n_hallucinated > 0 for s in scores), len(scores)),
        chair_i=_ratio(sum(v.hallucinated for v in verdicts), n_mentions),
        object_hallucination=_ratio(sum(v.verdict == "object" for v in verdicts), n_mentions),
        attribute_hallucination=_ratio(sum(v.verdict == "attribute" for v in verdicts), n_mentions),
        precision=_ratio(sum(not v.hallucinated for v in verdicts), n_mentions),
        recall=_ratio(sum(s.n_recalled for s in scores), sum(s.n_objects for s in scores)),
        n=len(scores),
    )


def answer_correct(task: str, answer: str, scene: Scene) -> bool:
    """Whether a short answer is right: ``task`` is "color" or "shape" (single-object scenes) or "count"."""
    if task == "color":
        return parse_color(answer) == scene.objects[0].color
    if task == "shape":
        return parse_shape(answer) == scene.objects[0].shape
    if task == "count":
        return parse_count(answer) == len(scene.objects)
    raise ValueError(f"unknown shapes task '{task}'")


_EXIST = re.compile(rf"\b(?P<color>{'|'.join(COLORS)})\s+(?P<shape>{'|'.join(SHAPES)})\b", re.IGNORECASE)


def shapes_task(prompt: str) -> str:
    """Which kind of shapes-world prompt this is: describe, color, shape, count, exist or other."""
    if prompt in DESCRIBE_PROMPTS:
        return "describe"
    for task, prompts in (("color", COLOR_PROMPTS), ("shape", SHAPE_PROMPTS), ("count", COUNT_PROMPTS)):
        if prompt in prompts:
            return task
    if _EXIST.search(prompt) and prompt.rstrip().endswith("?") and "where" not in prompt.lower():
        return "exist"
    return "other"


def exist_truth(prompt: str, scene: Scene) -> bool:
    """The right answer to "Is there a <colour> <shape> ...?" for ``scene``."""
    match = _EXIST.search(prompt)
    if match is None:
        raise ValueError(f"not an existence question: {prompt!r}")
    return scene.has(match.group("color").lower(), match.group("shape").lower())


@dataclass(frozen=True)
class SampleScore:
    """One generation scored against its scene: ``correct`` in [0, 1] (NaN when the task has no answer key);
    description mentions and how many are hallucinated (0 and 0 for questions)."""

    task: str
    correct: float
    n_mentions: int
    n_hallucinated: int


def score_sample(prompt: str, text: str, scene: Scene) -> SampleScore:
    """Task accuracy and hallucination of one answer: recall of the scene's objects for a description,
    right/wrong for a colour, shape, count or yes/no existence question."""
    task = shapes_task(prompt)
    if task == "describe":
        score = score_description(text, scene)
        recall = score.n_recalled / score.n_objects if score.n_objects else float("nan")
        return SampleScore(task, recall, len(score.verdicts), score.n_hallucinated)
    if task == "exist":
        return SampleScore(task, float(parse_yes_no(text) == exist_truth(prompt, scene)), 0, 0)
    if task in ("color", "shape") and len(scene.objects) != 1:
        return SampleScore(task, float("nan"), 0, 0)
    if task == "other":
        return SampleScore(task, float("nan"), 0, 0)
    return SampleScore(task, float(answer_correct(task, text, scene)), 0, 0)
