"""Faithful or hallucinated: labelling the object and attribute words of a generation, token by token.

For the shapes world (exact ground truth). The generated tokens are joined into the text; every shape word
("circle", "stars") and object-colour word ("red") is found in it and attached to the step whose token
holds the word's first letter (the step at which the model chose that word). Labels:

- a shape word is hallucinated when no object of the scene has that shape;
- a colour word directly followed by a shape word is hallucinated when the scene has no object of that
  colour *and* shape (a binding error counts); a colour word alone, when no object has that colour.

Mentions negated in their sentence ("there is no green triangle") are not labelled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from evolens.data.shapes import Scene
from evolens.data.shapes.parse import COLOR_SYNONYMS, SHAPE_SYNONYMS

_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE_END = re.compile(r"[.!?;\n]")
NEGATIONS = ("no", "not", "without", "nor")


@dataclass(frozen=True)
class WordLabel:
    """One labelled word: the step that emitted its first token, the word, its kind, the verdict."""

    step: int
    word: str
    kind: str
    hallucinated: bool


def shape_of(word: str) -> str | None:
    """'circles' -> 'circle', 'rhombus' -> 'diamond', anything else -> None."""
    lower = word.lower()
    for candidate in (
        lower,
        lower[:-1] if lower.endswith("s") else "",
        lower[:-2] if lower.endswith("es") else "",
    ):
        if candidate in SHAPE_SYNONYMS:
            return SHAPE_SYNONYMS[candidate]
    return None


def _step_of(offsets: list[int], char: int) -> int:
    """The index of the token whose span [offsets[i], offsets[i+1]) holds character ``char``."""
    step = 0
    while step + 1 < len(offsets) and offsets[step + 1] <= char:
        step += 1
    return step


def label_words(tokens: Sequence[str], scene: Scene) -> list[WordLabel]:
    """Labels for every shape and colour word of a generation, from its tokens decoded one by one."""
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    text = "".join(tokens)
    words = list(_WORD.finditer(text))
    labels: list[WordLabel] = []
    for i, match in enumerate(words):
        word = match.group(0)
        color, shape = COLOR_SYNONYMS.get(word.lower()), shape_of(word)
        if color is None and shape is None:
            continue
        if _negated(text, words, i):
            continue
        step = _step_of(offsets[:-1], match.start())
        if shape is not None:
            hallucinated = all(o.shape != shape for o in scene.objects)
            labels.append(WordLabel(step, word, "shape", hallucinated))
            continue
        assert color is not None  # neither a shape nor nothing: a colour word
        following = shape_of(words[i + 1].group(0)) if i + 1 < len(words) else None
        if following is not None and not _SENTENCE_END.search(text[match.end() : words[i + 1].start()]):
            hallucinated = not scene.has(color, following)
        else:
            hallucinated = all(o.color != color for o in scene.objects)
        labels.append(WordLabel(step, word, "color", hallucinated))
    return labels


def _negated(text: str, words: list[re.Match[str]], index: int) -> bool:
    """Whether a negation word stands among the three words before this one, in the same sentence
    ("no green triangle", "no large green triangle")."""
    for back in range(1, 4):
        if index - back < 0:
            return False
        previous = words[index - back]
        if _SENTENCE_END.search(text[previous.end() : words[index - back + 1].start()]):
            return False
        if previous.group(0).lower() in NEGATIONS:
            return True
    return False
