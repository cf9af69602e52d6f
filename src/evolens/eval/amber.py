"""AMBER's generative metrics (Wang et al., 2023): CHAIR, Cover, Hal and Cog from AMBER's own files.

Files, as AMBER releases them (its ``data/`` folder):
- ``annotations.json``: a list of ``{"id", "type", "truth", "hallu"}``; generative entries list the objects
  that are in the image (``truth``) and plausible objects that are not (``hallu``);
- ``relation.json``: object -> associated words (a "person" may be called "man", "woman", ...);
- ``safe_words.txt``: words never counted (one per line);
- ``query/query_generative.json``: ``[{"id", "image", "query"}]``; responses are ``[{"id", "response"}]``.

For each response, the object words are those of its words that are in AMBER's vocabulary (the keys and
values of ``relation.json``). A word is safe if it is a safe word; faithful if it is a truth object or
associated with one (marking that truth object as covered); otherwise hallucinated (and, if it is a
``hallu`` object or associated with one, that object counts towards Cog). Then
CHAIR = hallucinated words / object words, Cover = covered truth objects / truth objects,
Hal = responses with any hallucinated word / responses, Cog = ``hallu`` objects named / ``hallu`` objects.

Differences from AMBER's ``inference.py`` (which needs nltk corpora and spaCy's ``en_core_web_lg``): no POS
tagging (every vocabulary word counts, as a noun would), singularisation instead of WordNet lemmatisation,
and no word-vector similarity (> 0.8) fallback, so a word only matches an object through
``relation.json``. Its 0.001 initial denominators are not added. All values are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evolens.errors import InputError
from evolens.eval.words import read_json, read_json_records, singular, tokenize


@dataclass(frozen=True)
class AmberAnnotation:
    """One generative AMBER entry: objects in the image (``truth``) and absent plausible ones (``hallu``)."""

    id: int
    truth: tuple[str, ...]
    hallu: tuple[str, ...]


@dataclass(frozen=True)
class AmberData:
    """What scoring needs from AMBER's data folder."""

    annotations: dict[int, AmberAnnotation]
    relation: dict[str, tuple[str, ...]]
    safe_words: frozenset[str] = frozenset()

    @classmethod
    def load(cls, folder: str | Path) -> AmberData:
        """Read ``annotations.json``, ``relation.json`` and ``safe_words.txt`` (optional) from ``folder``."""
        folder = Path(folder)
        safe = folder / "safe_words.txt"
        return cls(
            load_amber_annotations(folder / "annotations.json"),
            load_relation(folder / "relation.json"),
            frozenset(w.strip() for w in safe.read_text().splitlines() if w.strip())
            if safe.exists()
            else frozenset(),
        )

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.relation) | frozenset(w for words in self.relation.values() for w in words)


def load_amber_annotations(path: str | Path) -> dict[int, AmberAnnotation]:
    """The generative entries of AMBER's ``annotations.json`` by id."""
    data = read_json(path, "AMBER annotations")
    if not isinstance(data, list) or not all(isinstance(e, dict) and "id" in e and "type" in e for e in data):
        raise InputError(f"{path}: not an AMBER annotations file (a list of objects with 'id' and 'type')")
    entries: dict[int, AmberAnnotation] = {}
    for entry in data:
        if entry["type"] != "generative":
            continue
        if not isinstance(entry.get("truth"), list) or not isinstance(entry.get("hallu"), list):
            raise InputError(f"{path}: generative entry {entry['id']} needs 'truth' and 'hallu' lists")
        entries[int(entry["id"])] = AmberAnnotation(
            int(entry["id"]), tuple(entry["truth"]), tuple(entry["hallu"])
        )
    return entries


def load_relation(path: str | Path) -> dict[str, tuple[str, ...]]:
    """AMBER's ``relation.json``: object -> associated words."""
    data = read_json(path, "AMBER relation")
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(f"{path}: not an AMBER relation file (an object of word -> list of words)")
    return {k: tuple(v) for k, v in data.items()}


def load_amber_queries(path: str | Path) -> list[dict[str, object]]:
    """AMBER's query file: ``[{"id", "image", "query"}]``."""
    records = read_json_records(path, "AMBER query")
    if not all({"id", "image", "query"} <= set(r) for r in records):
        raise InputError(f"{path}: not an AMBER query file (records need id, image, query)")
    return records


def load_amber_responses(path: str | Path) -> dict[int, str]:
    """Model responses in AMBER's inference format: ``[{"id", "response"}]`` -> id -> response."""
    records = read_json_records(path, "AMBER responses")
    if not all({"id", "response"} <= set(r) for r in records):
        raise InputError(f"{path}: not an AMBER responses file (records need id and response)")
    return {int(r["id"]): str(r["response"]) for r in records}


@dataclass
class AmberResponseScore:
    """AMBER details of one response."""

    id: int
    object_words: list[str]
    hallucinated: list[str]
    covered: list[str]
    hallu_named: list[str]


@dataclass
class AmberResult:
    """AMBER's generative metrics as fractions, with per-response details."""

    chair: float
    cover: float
    hal: float
    cog: float
    responses: list[AmberResponseScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "chair": self.chair,
            "cover": self.cover,
            "hal": self.hal,
            "cog": self.cog,
            "n": len(self.responses),
        }


def _first_match(word: str, objects: tuple[str, ...], relation: dict[str, tuple[str, ...]]) -> int | None:
    """Index of the first object that is ``word`` or has it among its associated words (AMBER's order:
    associations of every object first, then the objects themselves)."""
    for index, obj in enumerate(objects):
        if word in relation.get(obj, ()):
            return index
    return objects.index(word) if word in objects else None


def score_response(response_id: int, response: str, data: AmberData) -> AmberResponseScore:
    """Classify each object word of one response as safe, faithful or hallucinated."""
    if response_id not in data.annotations:
        raise InputError(f"response id {response_id} has no generative AMBER annotation")
    annotation, vocabulary = data.annotations[response_id], data.vocabulary
    words = [w for w in (singular(t, vocabulary) for t in tokenize(response)) if w in vocabulary]
    covered, named = [False] * len(annotation.truth), [False] * len(annotation.hallu)
    hallucinated: list[str] = []
    for word in words:
        if word in data.safe_words:
            continue
        truth_index = _first_match(word, annotation.truth, data.relation)
        if truth_index is not None:
            covered[truth_index] = True
            continue
        hallu_index = _first_match(word, annotation.hallu, data.relation)
        if hallu_index is not None:
            named[hallu_index] = True
        hallucinated.append(word)
    return AmberResponseScore(
        response_id,
        words,
        hallucinated,
        [o for o, c in zip(annotation.truth, covered, strict=True) if c],
        [o for o, n in zip(annotation.hallu, named, strict=True) if n],
    )


def amber_generative(responses: Iterable[tuple[int, str]], data: AmberData) -> AmberResult:
    """AMBER's CHAIR, Cover, Hal and Cog over ``(id, response)`` pairs."""
    scores = [score_response(i, r, data) for i, r in responses]
    if not scores:
        raise InputError("no AMBER responses to score")
    n_words = sum(len(s.object_words) for s in scores)
    n_truth = sum(len(data.annotations[s.id].truth) for s in scores)
    n_hallu = sum(len(data.annotations[s.id].hallu) for s in scores)
    return AmberResult(
        chair=sum(len(s.hallucinated) for s in scores) / n_words if n_words else 0.0,
        cover=sum(len(s.covered) for s in scores) / n_truth if n_truth else 0.0,
        hal=sum(bool(s.hallucinated) for s in scores) / len(scores),
        cog=sum(len(s.hallu_named) for s in scores) / n_hallu if n_hallu else 0.0,
        responses=scores,
    )
