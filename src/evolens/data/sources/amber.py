"""AMBER: an images folder plus one of its query files (``query_all.json``, ``query_generative.json``, ...).

A query file is a JSON list of ``{"id": int, "image": "AMBER_1.jpg", "query": "Describe this image."}``;
ids 1-1004 are the generative task, the rest discriminative yes/no questions. Each query is one item:
``--limit`` and ``--shuffle`` pick queries, and ``prompts`` (when given) replace the query text. The
ground truth names the AMBER id, which AMBER's ``annotations.json`` is keyed by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolens.data.rows import DataRow, pair_with_prompts, select, unique_ids
from evolens.errors import InputError, UsageError

GENERATIVE_IDS = range(1, 1005)


def amber_rows(
    images: Path,
    queries: Path,
    prompts: list[str],
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[DataRow]:
    """Rows ``amber-<id>`` for the selected queries, in the file's order."""
    if not images.is_dir():
        raise UsageError(f"{images}: no such AMBER images folder")
    rows = []
    for query in select(read_queries(queries), limit, shuffle, seed):
        task = "generative" if query["id"] in GENERATIVE_IDS else "discriminative"
        truth = {"source": "amber", "id": query["id"], "task": task}
        rows.extend(
            pair_with_prompts(
                f"amber-{query['id']}", images / query["image"], prompts or [query["query"]], truth
            )
        )
    return unique_ids(rows)


def read_queries(path: Path) -> list[dict[str, Any]]:
    """The query list, checked to have AMBER's shape."""
    if not path.is_file():
        raise UsageError(f"{path}: no such AMBER query file")
    try:
        queries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(queries, list) or not queries:
        raise InputError(f"{path}: not an AMBER query file (expected a non-empty JSON list)")
    for position, query in enumerate(queries):
        if not isinstance(query, dict) or not {"id", "image", "query"} <= query.keys():
            raise InputError(f"{path}: entry {position} is not an AMBER query (needs 'id', 'image', 'query')")
    return queries
