"""CHAIR (Rohrbach et al., 2018): object hallucination in captions against MSCOCO annotations.

CHAIR_i = hallucinated object mentions / all object mentions; CHAIR_s = captions with at least one
hallucinated object / all captions; recall = ground-truth objects mentioned / ground-truth objects.
An image's ground-truth objects are its instance annotations' categories (and, when a captions file is
given, the objects named by its human captions), mapped to the 80 MSCOCO categories with the standard
synonym list (``assets/eval/coco_synonyms.txt``, from the authors' release). The caption rules follow
the reference script: double words ("hot dog", "baby bird" -> "bird", "toilet seat" -> "toilet"), and
"seat" is dropped when "toilet" is in the caption.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from evolens.errors import InputError
from evolens.eval.words import read_json, read_json_records, singular, tokenize

COCO_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat",
    "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear",
    "hair drier", "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate", "train track",
)  # fmt: skip
ANIMAL_WORDS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
VEHICLE_WORDS = ("jet", "train")


@dataclass(frozen=True)
class CocoSynonyms:
    """The MSCOCO synonym list: one line per category, the category name first, then its synonyms."""

    groups: tuple[tuple[str, ...], ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> CocoSynonyms:
        """Read the list (the bundled copy when ``path`` is None). Entries are whitespace-stripped."""
        if path is None:
            text = resources.files("evolens.assets.eval").joinpath("coco_synonyms.txt").read_text()
        else:
            text = Path(path).read_text(encoding="utf-8")
        groups = tuple(
            tuple(w.strip() for w in line.split(",")) for line in text.splitlines() if line.strip()
        )
        return cls(groups)

    @cached_property
    def category_of(self) -> dict[str, str]:
        """word or synonym -> its category (the first word of its line)."""
        return {word: group[0] for group in self.groups for word in group}

    @cached_property
    def double_words(self) -> dict[str, str]:
        """Two-word phrases read as one word, and what they are read as."""
        mapping = {phrase: phrase for phrase in COCO_DOUBLE_WORDS}
        for animal in ANIMAL_WORDS:
            mapping[f"baby {animal}"] = animal
            mapping[f"adult {animal}"] = animal
        for vehicle in VEHICLE_WORDS:
            mapping[f"passenger {vehicle}"] = vehicle
        mapping.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
        return mapping


@dataclass(frozen=True)
class Mention:
    """One MSCOCO object named in a caption: the word as written (singular), its category, its word index."""

    word: str
    category: str
    index: int


def caption_objects(caption: str, synonyms: CocoSynonyms) -> list[Mention]:
    """The MSCOCO objects a caption names, in order (duplicates kept, as the reference script does)."""
    vocabulary = synonyms.category_of
    words = [singular(w, vocabulary) for w in tokenize(caption)]
    merged: list[tuple[str, int]] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in synonyms.double_words:
            merged.append((synonyms.double_words[pair], i))
            i += 2
        else:
            merged.append((words[i], i))
            i += 1
    if any(w == "toilet" for w, _ in merged):
        merged = [(w, i) for w, i in merged if w != "seat"]
    return [Mention(w, vocabulary[w], i) for w, i in merged if w in vocabulary]


def load_coco_objects(
    instances_path: str | Path, captions_path: str | Path | None = None, synonyms: CocoSynonyms | None = None
) -> dict[int, set[str]]:
    """image id -> ground-truth MSCOCO categories, from an ``instances_*.json`` (and ``captions_*.json``)."""
    synonyms = synonyms or CocoSynonyms.load()
    data = read_json(instances_path, "MSCOCO instances annotation")
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise InputError(
            f"{instances_path}: not an MSCOCO instances annotation file (no {', '.join(missing)})"
        )
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        objects: dict[int, set[str]] = {image["id"]: set() for image in data["images"]}
        for annotation in data["annotations"]:
            name = names[annotation["category_id"]]
            objects.setdefault(annotation["image_id"], set()).add(synonyms.category_of.get(name, name))
    except (KeyError, TypeError) as exc:
        raise InputError(f"{instances_path}: malformed MSCOCO instances entry (missing {exc})") from exc
    if captions_path is not None:
        captions = read_json(captions_path, "MSCOCO captions annotation")
        if not isinstance(captions, dict) or "annotations" not in captions:
            raise InputError(f"{captions_path}: not an MSCOCO captions annotation file (no annotations)")
        for annotation in captions["annotations"]:
            found = {m.category for m in caption_objects(annotation["caption"], synonyms)}
            objects.setdefault(annotation["image_id"], set()).update(found)
    return objects


def load_generated_captions(
    path: str | Path, image_id_key: str = "image_id", caption_key: str = "caption"
) -> list[tuple[int, str]]:
    """(image id, caption) pairs from a JSON list or JSON-lines file of generated captions."""
    records = read_json_records(path, "generated captions")
    try:
        return [(int(r[image_id_key]), str(r[caption_key])) for r in records]
    except KeyError as exc:
        raise InputError(f"{path}: a caption record has no {exc} field") from exc


@dataclass
class CaptionScore:
    """CHAIR details of one caption."""

    image_id: int
    caption: str
    mentioned: list[str]
    hallucinated: list[str]
    ground_truth: set[str]

    @property
    def chair_i(self) -> float:
        return len(self.hallucinated) / len(self.mentioned) if self.mentioned else 0.0


@dataclass
class ChairResult:
    """Corpus-level CHAIR_s, CHAIR_i and recall, with per-caption details."""

    chair_s: float
    chair_i: float
    recall: float
    captions: list[CaptionScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "chair_s": self.chair_s,
            "chair_i": self.chair_i,
            "recall": self.recall,
            "n": len(self.captions),
        }


def chair(
    captions: Iterable[tuple[int, str]], objects: dict[int, set[str]], synonyms: CocoSynonyms | None = None
) -> ChairResult:
    """Score generated captions against ground-truth categories (``load_coco_objects``)."""
    synonyms = synonyms or CocoSynonyms.load()
    scores: list[CaptionScore] = []
    for image_id, caption in captions:
        if image_id not in objects:
            raise InputError(f"image id {image_id} is not in the annotations")
        truth = objects[image_id]
        mentions = caption_objects(caption, synonyms)
        hallucinated = [m.category for m in mentions if m.category not in truth]
        scores.append(CaptionScore(image_id, caption, [m.category for m in mentions], hallucinated, truth))
    if not scores:
        raise InputError("no captions to score")
    n_mentions = sum(len(s.mentioned) for s in scores)
    n_truth = sum(len(s.ground_truth) for s in scores)
    n_recalled = sum(len(set(s.mentioned) & s.ground_truth) for s in scores)
    return ChairResult(
        chair_s=sum(bool(s.hallucinated) for s in scores) / len(scores),
        chair_i=sum(len(s.hallucinated) for s in scores) / n_mentions if n_mentions else 0.0,
        recall=n_recalled / n_truth if n_truth else 0.0,
        captions=scores,
    )
