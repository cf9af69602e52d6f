"""Faithful or hallucinated: labelling the object and attribute words of a generation, token by token.

For the shapes world (exact ground truth): ``label_words`` is ``evolens.eval.mentions.shapes_mentions`` on
the joined tokens, each mention attached to the step whose token holds the word's first letter (the step at
which the model chose that word). Labels:

- a shape word is hallucinated when no object of the scene has that shape;
- a colour word directly followed by a shape word is hallucinated when the scene has no object of that
  colour *and* shape (a binding error counts); a colour word alone, when no object has that colour.

Mentions negated in their sentence ("there is no green triangle") are not labelled. Each label carries the
correct alternatives the scene offers (``mentions.Mention.alternatives``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evolens.data.shapes import Scene
from evolens.eval.mentions import NEGATIONS, shape_of, shapes_mentions, step_span, token_offsets

__all__ = ["NEGATIONS", "WordLabel", "label_words", "shape_of"]
KIND_NAMES = {"object": "shape", "attribute": "color"}


@dataclass(frozen=True)
class WordLabel:
    """One labelled word: the step that emitted its first token, the word, its kind ("shape" or "color"),
    the verdict, and the correct words the scene offers in its place (the word itself when faithful)."""

    step: int
    word: str
    kind: str
    hallucinated: bool
    alternatives: tuple[str, ...] = ()


def label_words(tokens: Sequence[str], scene: Scene) -> list[WordLabel]:
    """Labels for every shape and colour word of a generation, from its tokens decoded one by one."""
    offsets = token_offsets(tokens)
    return [
        WordLabel(
            step_span(offsets, m.start, m.end)[0], m.word, KIND_NAMES[m.kind], m.hallucinated, m.alternatives
        )
        for m in shapes_mentions("".join(tokens), scene)
    ]
