"""Local sources: one image file, a folder of images, or a JSONL manifest (one JSON object per line).

A folder is searched recursively: an image in a subfolder gets its relative path (without suffix) as its id
("animals/cat1") and the subfolder as its ``group`` ("animals"), so class folders can be compared.
A manifest line holds ``image`` (a path, relative to the manifest's folder) and ``prompt``, optionally
``id``, ``group`` and ``ground_truth`` (any JSON); ``image`` may be null for a text-only prompt. Ids are
kept verbatim.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from evolens.data.images import find_images
from evolens.data.rows import DataRow, pair_with_prompts, select, unique_ids
from evolens.errors import UsageError
from evolens.io.atomic import json_line


def image_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """One image file, one row per prompt."""
    if not path.exists():
        raise UsageError(f"{path}: no such image file")
    del limit, shuffle, seed  # one item: any selection keeps it
    return pair_with_prompts(path.stem, path, prompts)


def folder_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """Every image in the folder and its subfolders (in natural order of their relative paths), then
    selected, one row per prompt; an image in a subfolder carries the subfolder as its group."""
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    images = find_images(path)
    if not images:
        raise UsageError(f"{path}: no image files in this folder or its subfolders")
    rows = []
    for image in select(images, limit, shuffle, seed):
        relative = image.relative_to(path)
        group = relative.parent.as_posix() if relative.parent != Path(".") else None
        rows.extend(pair_with_prompts(relative.with_suffix("").as_posix(), image, prompts, group=group))
    return unique_ids(rows)


def jsonl_rows(
    path: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """The manifest's lines, selected; ``prompts`` (when given) replace each line's own prompt."""
    lines = read_manifest(path)
    chosen = select(lines, limit, shuffle, seed)
    rows: list[DataRow] = []
    for line in chosen:
        image = None if line.get("image") is None else (path.parent / str(line["image"])).resolve()
        base_id = str(line.get("id") or (image.stem if image else f"line-{line['_line']}"))
        line_prompts = prompts or [str(line.get("prompt") or "")]
        group = None if line.get("group") is None else str(line["group"])
        paired = pair_with_prompts(base_id, image, line_prompts, line.get("ground_truth"), group)
        rows.extend(dataclasses.replace(row, response=_response(line)) for row in paired)
    return unique_ids(rows)


def _response(line: dict[str, Any]) -> str | tuple[int, ...] | None:
    """A manifest line's ``response`` (to score): text, or a list of token ids."""
    value = line.get("response")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(token, int) for token in value):
        return tuple(value)
    raise UsageError(f"manifest line {line['_line']}: 'response' must be text or a list of token ids")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, each with its line number as ``_line``; a bad line is a usage error
    (exit 2, like any other unusable input specification). Lines end at newlines only: U+2028 and U+2029
    are valid inside JSON strings and do not split a line."""
    if not path.is_file():
        raise UsageError(f"{path}: no such manifest file")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = []
    for number, text in enumerate(content.split("\n"), start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(value, dict) or ("image" not in value and "prompt" not in value):
            raise UsageError(f"{path}:{number}: a manifest line needs an 'image' and a 'prompt'")
        lines.append({**value, "_line": number})
    if not lines:
        raise UsageError(f"{path}: the manifest is empty")
    return lines


def manifest_text(rows: list[DataRow]) -> str:
    """``rows`` as JSONL (absolute image paths, so the manifest is valid from any folder)."""
    return "".join(json_line(row.to_manifest()) for row in rows)
