"""POPE question sets from COCO-format instance annotations (Li et al., 2023, "Evaluating Object Hallucination
in Large Vision-Language Models").

Per image, ``per_image`` objects present in it (drawn at random, seeded) each give a "yes" question, and each
of them one absent object a "no" question, chosen by the split:

- ``random``: any object absent from the image, at random;
- ``popular``: the most frequent objects of the whole annotation file (by the number of images holding them)
  that are absent from the image, most frequent first;
- ``adversarial``: the absent object that co-occurs most often (in the number of images holding both) with
  that present object.

No absent object is asked twice about one image; ties are broken by name. Images holding fewer distinct
objects than ``per_image`` are left out (and counted). Questions follow POPE's line format:
``{"question_id", "image" (the file name), "text": "Is there a {name} in the image?", "label": "yes"|"no"}``,
the yes/no pairs of an image next to each other.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from evolens.errors import InputError
from evolens.io.atomic import write_jsonl

SPLITS = ("random", "popular", "adversarial")


@dataclass
class PopeSets:
    """The three question sets and what was left out.

    Attributes:
        questions: split -> question lines.
        left_out: file names of images with fewer objects than asked for.
    """

    questions: dict[str, list[dict[str, Any]]]
    left_out: list[str] = field(default_factory=list)


def read_instances(path: str | Path) -> dict[str, set[str]]:
    """A COCO instances file (``instances_val2014.json`` or alike) as file name -> the names of the object
    categories annotated in it; a file that is not one is an ``InputError`` naming what is missing."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        files = {int(i["id"]): str(i["file_name"]) for i in data["images"]}
        objects: dict[str, set[str]] = {name: set() for name in files.values()}
        for annotation in data["annotations"]:
            objects[files[int(annotation["image_id"])]].add(names[int(annotation["category_id"])])
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such annotation file") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not COCO instance annotations ({type(exc).__name__}: {exc})") from exc
    return objects


def build_pope(objects: Mapping[str, set[str]], per_image: int = 3, seed: int = 0) -> PopeSets:
    """The random, popular and adversarial question sets of ``objects`` (file name -> object names)."""
    frequency = Counter(name for names in objects.values() for name in names)
    cooccurrence: Counter[tuple[str, str]] = Counter()
    for names in objects.values():
        for first, second in combinations(sorted(names), 2):
            cooccurrence[first, second] += 1
            cooccurrence[second, first] += 1
    vocabulary = sorted(frequency)
    by_popularity = sorted(vocabulary, key=lambda name: (-frequency[name], name))
    rng = random.Random(seed)
    sets = PopeSets({split: [] for split in SPLITS})
    for image in sorted(objects):
        present = sorted(objects[image])
        if len(present) < per_image:
            sets.left_out.append(image)
            continue
        asked = rng.sample(present, per_image)
        absent = [name for name in vocabulary if name not in objects[image]]
        negatives = {
            "random": rng.sample(absent, min(per_image, len(absent))),
            "popular": [name for name in by_popularity if name not in objects[image]][:per_image],
            "adversarial": _adversarial(asked, absent, cooccurrence),
        }
        for split in SPLITS:
            for yes, no in zip(asked, negatives[split], strict=False):
                for name, label in ((yes, "yes"), (no, "no")):
                    questions = sets.questions[split]
                    questions.append(
                        {
                            "question_id": len(questions) + 1,
                            "image": image,
                            "text": f"Is there a {name} in the image?",
                            "label": label,
                        }
                    )
    return sets


def _adversarial(
    asked: Sequence[str], absent: Sequence[str], cooccurrence: Counter[tuple[str, str]]
) -> list[str]:
    """For each asked object in turn, the absent object not chosen yet that co-occurs most with it."""
    chosen: list[str] = []
    for present in asked:
        candidates = [name for name in absent if name not in chosen]
        if not candidates:
            break
        chosen.append(min(candidates, key=lambda name: (-cooccurrence[present, name], name)))
    return chosen


def write_pope(sets: PopeSets, out: Path) -> list[Path]:
    """``out/pope_{random,popular,adversarial}.jsonl``; returns the paths."""
    return [write_jsonl(out / f"pope_{split}.jsonl", sets.questions[split]) for split in SPLITS]
