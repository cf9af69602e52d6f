"""Word handling shared by the hallucination metrics: tokenising captions and singularising nouns.

The reference scripts use nltk's tokenizer and pattern/WordNet singularisation; neither works offline
without downloaded corpora, so evolens tokenises with a regular expression (words, clitics and
punctuation marks as separate tokens, like nltk's ``word_tokenize``) and singularises with ``inflect``.
Words already in a metric's vocabulary are kept as they are ("bus" is not turned into "bu").
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any

import inflect

from evolens.errors import InputError

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|'[a-z]+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word, clitic ('s) and punctuation tokens: "Two dogs, one cat." -> two dogs , one cat ."""
    return _TOKEN.findall(text.lower())


@cache
def _engine() -> inflect.engine:
    return inflect.engine()


def singular(word: str, vocabulary: Collection[str] = ()) -> str:
    """The singular of a plural noun ("knives" -> "knife"); words in ``vocabulary`` are returned unchanged."""
    if word in vocabulary or not word.isalpha():
        return word
    return _engine().singular_noun(word) or word


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON of ``path``, or an ``InputError`` naming the file and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON {what} file ({exc})") from exc


def read_json_records(path: str | Path, what: str) -> list[dict[str, Any]]:
    """Records from a JSON list or a JSON-lines file (one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    text = path.read_text(encoding="utf-8").strip()
    try:
        records = (
            json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x]
        )
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a JSON or JSON-lines {what} file ({exc})") from exc
    if not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: a {what} file holds JSON objects, one per record")
    return records
