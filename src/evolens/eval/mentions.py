"""Object mentions of a generation, found in its text and aligned to the steps that emitted them.

A generation's text here is its step tokens joined (``"".join(tokens)``), so every character belongs to one
step: the step whose decoded token holds it. A ``Mention`` is a word (or a two-word COCO phrase such as
"hot dog") naming an object or an attribute, with its character span in that text; ``step_span`` gives the
first and last step of the span. The first step is the one at which the model chose the word.

Labels come from the sample's ground truth, by source:

- shapes world (``shapes_mentions``): shape words are ``object`` mentions, colour words ``attribute``
  mentions; a shape is hallucinated when no object has it; a colour followed by a shape word is hallucinated
  when no object has that colour *and* shape (a binding error is charged to the colour), a colour alone when
  no object has it; negated mentions ("no green triangle") are skipped. **Correct alternatives**: for a
  colour followed by a shape word, the colours of the objects of that shape; for a colour alone, every
  colour of the scene; for a shape preceded by a colour, the shapes of the objects of that colour, else every
  shape of the scene. A faithful mention's alternative is the word itself.
- MSCOCO (``coco_mentions``): CHAIR's rules (``evolens.eval.chair``): object words and double words mapped
  to the 80 categories with the synonym list, hallucinated when the category is not among the image's;
  every mention is an ``object``; COCO offers no correct alternative.
- AMBER (``amber_mentions``): AMBER's object vocabulary (``evolens.eval.amber``): safe words skipped, a word
  is faithful when it is (or is associated with) a truth object; every mention is an ``object``; no
  alternative.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from evolens.data.shapes import Scene
from evolens.data.shapes.parse import COLOR_SYNONYMS, SHAPE_SYNONYMS
from evolens.eval.amber import AmberAnnotation, AmberData, _first_match
from evolens.eval.chair import CocoSynonyms
from evolens.eval.words import singular

KINDS = ("object", "attribute")
"""Word kinds: object nouns (a shape, a COCO category, an AMBER object) and attributes (colours)."""

NEGATIONS = ("no", "not", "without", "nor")
_WORD = re.compile(r"[A-Za-z]+")
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|'[a-z]+|[^\w\s]")  # ``words.tokenize``, with spans
_SENTENCE_END = re.compile(r"[.!?;\n]")


@dataclass(frozen=True)
class Mention:
    """One object or attribute mention.

    Attributes:
        start, end: its character span [start, end) in the joined tokens.
        word: the text as written; kind: one of ``KINDS``; category: what it names (a shape, a colour, a
            COCO category, an AMBER object).
        hallucinated: the ground truth does not support it.
        alternatives: the correct words the ground truth offers in its place (empty when it offers none).
    """

    start: int
    end: int
    word: str
    kind: str
    category: str
    hallucinated: bool
    alternatives: tuple[str, ...] = ()


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


def token_offsets(tokens: Sequence[str]) -> list[int]:
    """Where each token starts in ``"".join(tokens)``, plus the text's length: n+1 offsets."""
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    return offsets


def step_span(offsets: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """First and last step (inclusive) whose token overlaps characters [start, end)."""
    first = max(i for i in range(len(offsets) - 1) if offsets[i] <= start)
    last = max(i for i in range(len(offsets) - 1) if offsets[i] < end)
    return first, last


def shapes_mentions(text: str, scene: Scene) -> list[Mention]:
    """Shape and colour mentions of ``text`` judged against ``scene`` (module docstring)."""
    words = list(_WORD.finditer(text))
    mentions: list[Mention] = []
    for i, match in enumerate(words):
        word = match.group(0)
        color, shape = COLOR_SYNONYMS.get(word.lower()), shape_of(word)
        if (color is None and shape is None) or _negated(text, words, i):
            continue
        if shape is not None:
            before = (
                COLOR_SYNONYMS.get(words[i - 1].group(0).lower())
                if i and _joined(text, words, i - 1)
                else None
            )
            with_color = [o.shape for o in scene.objects if o.color == before] if before else []
            bad = all(o.shape != shape for o in scene.objects)
            pool = with_color or [o.shape for o in scene.objects]
            mentions.append(_mention(match, "object", shape, bad, pool))
            continue
        assert color is not None
        following = (
            shape_of(words[i + 1].group(0)) if i + 1 < len(words) and _joined(text, words, i) else None
        )
        if following is not None:
            bad = not scene.has(color, following)
            pool = [o.color for o in scene.objects if o.shape == following]
        else:
            bad = all(o.color != color for o in scene.objects)
            pool = [o.color for o in scene.objects]
        mentions.append(_mention(match, "attribute", color, bad, pool))
    return mentions


def _mention(match: re.Match[str], kind: str, category: str, bad: bool, pool: list[str]) -> Mention:
    alternatives = tuple(dict.fromkeys(pool)) if bad else (category,)
    return Mention(match.start(), match.end(), match.group(0), kind, category, bad, alternatives)


def _joined(text: str, words: list[re.Match[str]], index: int) -> bool:
    """Whether word ``index`` and the next stand in the same sentence."""
    return not _SENTENCE_END.search(text[words[index].end() : words[index + 1].start()])


def _negated(text: str, words: list[re.Match[str]], index: int) -> bool:
    """A negation among the three words before this one, in the same sentence ("no large green triangle")."""
    for back in range(1, 4):
        if index - back < 0 or not _joined(text, words, index - back):
            return False
        if words[index - back].group(0).lower() in NEGATIONS:
            return True
    return False


def _spans(text: str) -> list[tuple[str, int, int]]:
    """``words.tokenize``'s tokens with their character spans in ``text``."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text.lower())]


def coco_mentions(text: str, truth: set[str], synonyms: CocoSynonyms) -> list[Mention]:
    """CHAIR's object mentions of ``text`` (same rules as ``chair.caption_objects``), judged against the
    image's categories ``truth``."""
    vocabulary = synonyms.category_of
    tokens = [(singular(w, vocabulary), s, e) for w, s, e in _spans(text)]
    merged: list[tuple[str, int, int]] = []
    i = 0
    while i < len(tokens):
        pair = " ".join(t[0] for t in tokens[i : i + 2])
        if pair in synonyms.double_words:
            merged.append((synonyms.double_words[pair], tokens[i][1], tokens[i + 1][2]))
            i += 2
        else:
            merged.append(tokens[i])
            i += 1
    if any(w == "toilet" for w, _, _ in merged):
        merged = [m for m in merged if m[0] != "seat"]
    return [
        Mention(s, e, text[s:e], "object", vocabulary[w], vocabulary[w] not in truth)
        for w, s, e in merged
        if w in vocabulary
    ]


def amber_mentions(text: str, annotation: AmberAnnotation, data: AmberData) -> list[Mention]:
    """AMBER's object words of ``text`` (same rules as ``amber.score_response``), safe words left out."""
    vocabulary = data.vocabulary
    mentions = []
    for word, start, end in _spans(text):
        word = singular(word, vocabulary)
        if word not in vocabulary or word in data.safe_words:
            continue
        faithful = _first_match(word, annotation.truth, data.relation) is not None
        mentions.append(Mention(start, end, text[start:end], "object", word, not faithful))
    return mentions
