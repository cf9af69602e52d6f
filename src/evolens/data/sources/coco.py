"""MSCOCO: an images folder plus an official annotation JSON (``instances_*.json`` or ``captions_*.json``).

Both files list ``images`` ({id, file_name}); instances add ``annotations`` with a ``category_id`` and a
``categories`` table, captions add ``annotations`` with a ``caption``. Each image's ground truth keeps what
the file gives: the object category names (for CHAIR) and/or the reference captions. Images listed in the
annotations but missing from the folder are left out (a partial download is common); none present is an
error. Order is by image id, so a selection is reproducible.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from evolens.data.config import DEFAULT_DESCRIBE_PROMPT
from evolens.data.rows import DataRow, pair_with_prompts, select
from evolens.errors import InputError, UsageError


def coco_rows(
    images: Path,
    annotations: Path,
    prompts: list[str],
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[DataRow]:
    """Rows ``coco-<image id>`` for the selected images; the paper's description prompt by default."""
    data = read_coco(annotations)
    if not images.is_dir():
        raise UsageError(f"{images}: no such COCO images folder")
    present = [
        image
        for image in sorted(data["images"], key=lambda i: i["id"])
        if (images / image["file_name"]).is_file()
    ]
    if not present:
        raise UsageError(
            f"{images}: none of the {len(data['images'])} images of {annotations.name} is in this folder"
        )
    objects, captions = _ground_truth(data)
    rows = []
    for image in select(present, limit, shuffle, seed):
        truth: dict[str, Any] = {"source": "coco", "image_id": image["id"], "file_name": image["file_name"]}
        if objects is not None:
            truth["objects"] = sorted(objects.get(image["id"], set()))
        if captions is not None:
            truth["captions"] = captions.get(image["id"], [])
        rows.extend(
            pair_with_prompts(
                f"coco-{image['id']}",
                images / image["file_name"],
                prompts or [DEFAULT_DESCRIBE_PROMPT],
                truth,
            )
        )
    return rows


def read_coco(path: Path) -> dict[str, Any]:
    """The annotation JSON, checked to have the COCO shape (``images`` with id and file_name)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such COCO annotation file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(
        isinstance(i, dict) and {"id", "file_name"} <= i.keys() for i in images
    ):
        raise InputError(f"{path}: not a COCO annotation file (needs 'images' with 'id' and 'file_name')")
    return data


def _ground_truth(
    data: dict[str, Any],
) -> tuple[dict[int, set[str]] | None, dict[int, list[str]] | None]:
    """(image id -> object category names) for instances files, (image id -> captions) for captions files."""
    annotations = data.get("annotations") or []
    objects: dict[int, set[str]] | None = None
    captions: dict[int, list[str]] | None = None
    if "categories" in data:
        names = {c["id"]: c["name"] for c in data["categories"]}
        objects = defaultdict(set)
        for annotation in annotations:
            if "category_id" in annotation:
                objects[annotation["image_id"]].add(names.get(annotation["category_id"], "?"))
    if any("caption" in a for a in annotations):
        captions = defaultdict(list)
        for annotation in annotations:
            if "caption" in annotation:
                captions[annotation["image_id"]].append(annotation["caption"].strip())
    return objects, captions
