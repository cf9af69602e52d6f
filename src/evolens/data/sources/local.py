"""Local sources: one image file, a folder of images, or a JSONL manifest (one JSON object per line).

A manifest line holds ``image`` (a path, relative to the manifest's folder) and ``prompt``, optionally
``id`` and ``ground_truth`` (any JSON); ``image`` may be null for a text-only prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolens.data.images import find_images
from evolens.data.rows import DataRow, pair_with_prompts, safe_id, select, unique_ids
from evolens.errors import InputError, UsageError
from evolens.io.atomic import json_line


def image_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """One image file, one row per prompt."""
    if not path.exists():
        raise UsageError(f"{path}: no such image file")
    del limit, shuffle, seed  # one item: any selection keeps it
    return pair_with_prompts(safe_id(path.stem), path, prompts)


def folder_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """Every image directly in the folder (sorted by name), then selected, one row per prompt."""
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    images = find_images(path)
    if not images:
        raise UsageError(f"{path}: no image files in this folder")
    chosen = select(images, limit, shuffle, seed)
    rows = [row for image in chosen for row in pair_with_prompts(safe_id(image.stem), image, prompts)]
    return unique_ids(rows)


def jsonl_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """The manifest's lines, selected; ``prompts`` (when given) replace each line's own prompt."""
    lines = read_manifest(path)
    chosen = select(lines, limit, shuffle, seed)
    rows = []
    for line in chosen:
        image = None if line.get("image") is None else (path.parent / str(line["image"])).resolve()
        base_id = safe_id(str(line.get("id") or (image.stem if image else f"line-{line['_line']}")))
        line_prompts = prompts or [str(line.get("prompt") or "")]
        rows.extend(pair_with_prompts(base_id, image, line_prompts, line.get("ground_truth")))
    return unique_ids(rows)


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, each with its line number as ``_line``; bad lines are errors."""
    if not path.is_file():
        raise UsageError(f"{path}: no such manifest file")
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(value, dict) or ("image" not in value and "prompt" not in value):
            raise InputError(f"{path}:{number}: a manifest line needs an 'image' and a 'prompt'")
        lines.append({**value, "_line": number})
    if not lines:
        raise InputError(f"{path}: the manifest is empty")
    return lines


def manifest_text(rows: list[DataRow]) -> str:
    """``rows`` as JSONL (absolute image paths, so the manifest is valid from any folder)."""
    return "".join(json_line(row.to_manifest()) for row in rows)
