"""What a run's inputs are, by content: the manifest lines with each image's SHA-256, and what changed since
the last run (added, removed, changed inputs), so that a rerun never answers "already done" for inputs
that changed.

Hashing every image on every run would cost a full read of the data; a file's hash is reused while its
size and modification time are the same (``OUT/data/file_hashes.json``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolens.data.images import file_sha256
from evolens.data.rows import DataRow
from evolens.io import atomic


@dataclass
class InputChanges:
    """Sample ids added, removed and changed (another image file by hash, prompt or ground truth)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, shown: int = 3) -> str:
        """'1 added (flowers/rose), 2 removed (a, b), 0 changed'."""

        def part(name: str, ids: list[str]) -> str:
            more = f", +{len(ids) - shown} more" if len(ids) > shown else ""
            listed = f" ({', '.join(ids[:shown])}{more})" if ids else ""
            return f"{len(ids)} {name}{listed}"

        return ", ".join(
            [part("added", self.added), part("removed", self.removed), part("changed", self.changed)]
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def manifest_lines(rows: list[DataRow], cache_file: Path) -> list[dict[str, Any]]:
    """The manifest objects of ``rows``, each with ``image_sha256`` (None for text-only rows and for files
    that cannot be read: those fail in the trace, on their own)."""
    cache: dict[str, Any] = atomic.read_json(cache_file) or {}
    hashes: dict[str, str] = {}
    lines = []
    for row in rows:
        line = row.to_manifest()
        line["image_sha256"] = None if row.image is None else _cached_sha256(Path(row.image), cache, hashes)
        lines.append(line)
    if hashes:
        atomic.write_json(cache_file, cache)
    return lines


def without_line_numbers(line: dict[str, Any]) -> dict[str, Any]:
    """A manifest line as written (``read_manifest`` adds each line's number as ``_line``)."""
    return {key: value for key, value in line.items() if key != "_line"}


def identity(line: dict[str, Any]) -> dict[str, Any]:
    """What makes an input the same input: everything but where its image file lies when its bytes are
    known (a run folder moved elsewhere, with the shapes world rendered inside it, has the same inputs)."""
    left_out = {"_line", "image"} if line.get("image_sha256") is not None else {"_line"}
    return {key: value for key, value in line.items() if key not in left_out}


def digest(lines: list[dict[str, Any]]) -> str:
    """SHA-256 of the inputs' identities, in order."""
    return hashlib.sha256("".join(atomic.json_line(identity(line)) for line in lines).encode()).hexdigest()


def compare(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> InputChanges:
    """What differs between two manifests' lines, by sample id (image paths aside: see ``identity``)."""
    before = {str(line["id"]): identity(line) for line in previous}
    after = {str(line["id"]): identity(line) for line in current}
    return InputChanges(
        added=[sample_id for sample_id in after if sample_id not in before],
        removed=[sample_id for sample_id in before if sample_id not in after],
        changed=[
            sample_id for sample_id in after if sample_id in before and before[sample_id] != after[sample_id]
        ],
    )


def _cached_sha256(path: Path, cache: dict[str, Any], fresh: dict[str, str]) -> str | None:
    try:
        status = path.stat()
    except OSError:
        return None
    key = str(path.resolve())
    known = cache.get(key)
    if (
        isinstance(known, dict)
        and known.get("size") == status.st_size
        and known.get("mtime_ns") == status.st_mtime_ns
    ):
        return str(known["sha256"])
    try:
        digest = file_sha256(path)
    except OSError:
        return None
    cache[key] = {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256": digest}
    fresh[key] = digest
    return digest
