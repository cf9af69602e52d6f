"""Reading generated text back into shapes-world facts: objects, colours, shapes, counts, yes/no answers.

The public API, used by the demo's quality eval and by the hallucination metrics:

- ``parse_description(text) -> list[ParsedObject]``: every object mention ("a large red circle in the top
  left corner") in order, with whatever attributes the text gives (``None`` where it gives none);
- ``parse_color(text)`` / ``parse_shape(text)``: the first object colour / shape named, or ``None``;
- ``parse_yes_no(text) -> bool | None``: the answer to a yes/no question, ``None`` when neither;
- ``parse_count(text) -> int | None``: the first number ("two", "3", "a single shape" -> 1);
- ``parse_background(text) -> (color, texture)``: the background as the description states it.

Matching is case-insensitive and accepts a few synonyms (grey, violet, big, tiny, upper, middle, ...).
Mentions after "no" ("there is no green triangle") are not objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from evolens.data.shapes.world import (
    BACKGROUND_COLORS,
    COLORS,
    POSITIONS,
    SHAPES,
    TEXTURES,
    Scene,
    ShapeObject,
)

COLOR_SYNONYMS = {**{c: c for c in COLORS}, "violet": "purple", "magenta": "pink"}
SHAPE_SYNONYMS = {**{s: s for s in SHAPES}, "rhombus": "diamond", "ring": "circle"}
SIZE_SYNONYMS = {
    "small": "small",
    "tiny": "small",
    "little": "small",
    "medium": "medium",
    "medium-sized": "medium",
    "mid-sized": "medium",
    "large": "large",
    "big": "large",
}
POSITION_SYNONYMS = {
    **{p: p for p in POSITIONS},
    "upper left": "top left",
    "upper right": "top right",
    "lower left": "bottom left",
    "lower right": "bottom right",
    "centre": "center",
    "middle": "center",
}
NUMBERS = {"no": 0, "zero": 0, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5}
BACKGROUND_SYNONYMS = {
    **{b: b for b in BACKGROUND_COLORS},
    "light grey": "light gray",
    "dark grey": "dark gray",
}


def _alternation(words: Mapping[str, object]) -> str:
    """Regex alternation of the keys, longest first so 'top left' wins over 'top'."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_MENTION = re.compile(
    rf"\b(?:(?P<size>{_alternation(SIZE_SYNONYMS)})\s+)?"
    rf"(?:(?P<color>{_alternation(COLOR_SYNONYMS)})\s+)?"
    rf"(?P<shape>{_alternation(SHAPE_SYNONYMS)})(?:e?s)?\b",
    re.IGNORECASE,
)
_POSITION = re.compile(rf"\b(?:{_alternation(POSITION_SYNONYMS)})\b", re.IGNORECASE)
_COLOR = re.compile(rf"\b(?:{_alternation(COLOR_SYNONYMS)})\b", re.IGNORECASE)
_SHAPE = re.compile(rf"\b(?:{_alternation(SHAPE_SYNONYMS)})(?:e?s)?\b", re.IGNORECASE)
_NUMBER = re.compile(rf"\b(?:\d+|{_alternation(NUMBERS)})\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no|not|isn't|there's no)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|without)\s+(?:an?\s+)?$", re.IGNORECASE)
_TEXTURE_WORDS = "|".join(TEXTURES)
_BACKGROUND_WORDS = _alternation(BACKGROUND_SYNONYMS)
_BACKGROUND = re.compile(
    rf"\b(?:(?P<texture>{_TEXTURE_WORDS})\s+)?(?P<color>{_BACKGROUND_WORDS})"
    rf"(?:\s+(?P<texture_after>{_TEXTURE_WORDS}))?\s+background\b"
    rf"|\bbackground is (?:(?P<texture2>{_TEXTURE_WORDS})\s+)?(?P<color2>{_BACKGROUND_WORDS})",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;\n]")


@dataclass(frozen=True)
class ParsedObject:
    """One object mention read from text; an attribute the text does not give is ``None``."""

    shape: str
    color: str | None = None
    size: str | None = None
    position: str | None = None

    def matches(self, obj: ShapeObject, attributes: tuple[str, ...] = ("shape", "color")) -> bool:
        """Whether this mention agrees with a ground-truth object on ``attributes``."""
        return all(getattr(self, a) == getattr(obj, a) for a in attributes)


def parse_color(text: str) -> str | None:
    """The first object colour named in ``text`` ('The shape is Red.' -> 'red'), or None."""
    match = _COLOR.search(text)
    return COLOR_SYNONYMS[match.group(0).lower()] if match else None


def parse_shape(text: str) -> str | None:
    """The first shape named in ``text`` ('It is a star.' -> 'star'), or None."""
    match = _SHAPE.search(text)
    return _shape_word(match.group(0)) if match else None


def parse_yes_no(text: str) -> bool | None:
    """True for a yes, False for a no (or 'there is no ...'), None when the text says neither."""
    match = _YES_NO.search(text)
    if match is None:
        return None
    return match.group(1).lower() == "yes"


def parse_count(text: str) -> int | None:
    """The first number in ``text`` as an int ('There are two shapes.' -> 2), or None."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    word = match.group(0).lower()
    return int(word) if word.isdigit() else NUMBERS[word]


def parse_background(text: str) -> tuple[str | None, str | None]:
    """(colour, texture) of the background as ``text`` states it; None for what it does not state."""
    match = _BACKGROUND.search(text)
    if match is None:
        return None, None
    color = match.group("color") or match.group("color2")
    texture = match.group("texture") or match.group("texture_after") or match.group("texture2")
    return BACKGROUND_SYNONYMS[color.lower()], texture.lower() if texture else None


def parse_description(text: str) -> list[ParsedObject]:
    """Every object mentioned in ``text``, in order of mention.

    A mention is an optional size, an optional colour and a shape word. Its position is the position phrase
    in the same sentence after the mention (before the next mention), else the nearest one before it.
    """
    objects: list[ParsedObject] = []
    for sentence in _sentences(text):
        mentions = [m for m in _MENTION.finditer(sentence) if not _NEGATION.search(sentence[: m.start()])]
        for i, mention in enumerate(mentions):
            after_end = mentions[i + 1].start() if i + 1 < len(mentions) else len(sentence)
            before_start = mentions[i - 1].end() if i > 0 else 0
            position = _first_position(sentence[mention.end() : after_end])
            if position is None:
                position = _last_position(sentence[before_start : mention.start()])
            size, color = mention.group("size"), mention.group("color")
            objects.append(
                ParsedObject(
                    shape=_shape_word(mention.group("shape")),
                    color=COLOR_SYNONYMS[color.lower()] if color else None,
                    size=SIZE_SYNONYMS[size.lower()] if size else None,
                    position=position,
                )
            )
    return objects


def scene_objects(scene: Scene) -> list[ParsedObject]:
    """The ground truth of ``scene`` as ``ParsedObject``s, in reading order (what a perfect parse gives)."""
    return [ParsedObject(o.shape, o.color, o.size, o.position) for o in scene.objects]


def _shape_word(word: str) -> str:
    word = word.lower()
    for ending in ("es", "s"):
        stem = word[: -len(ending)]
        if word.endswith(ending) and stem in SHAPE_SYNONYMS:
            return SHAPE_SYNONYMS[stem]
    return SHAPE_SYNONYMS[word]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _first_position(span: str) -> str | None:
    match = _POSITION.search(span)
    return POSITION_SYNONYMS[match.group(0).lower()] if match else None


def _last_position(span: str) -> str | None:
    matches = list(_POSITION.finditer(span))
    return POSITION_SYNONYMS[matches[-1].group(0).lower()] if matches else None
