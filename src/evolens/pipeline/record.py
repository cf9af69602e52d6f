"""The run folder's layout and its record of finished stages (what makes a run resumable).

``OUT/run.json`` holds when the run was first started, and for each finished stage the fingerprint of the
settings it ran with. A stage counts as done only when its fingerprint is recorded and equal to the current
one; the record is rewritten atomically after each stage's output is in place, so a kill at any moment
leaves either the old record (the stage runs again) or the new one (its output is complete).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolens.io import atomic


@dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def trace(self) -> Path:
        return self.root / "trace"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def nulls(self) -> Path:
        """``nulls/<condition>``: the trace's tokens scored under each null condition."""
        return self.root / "nulls"

    @property
    def skip(self) -> Path:
        return self.root / "skip"

    @property
    def causal(self) -> Path:
        return self.root / "causal"

    @property
    def hallucination(self) -> Path:
        return self.root / "hallucination"

    @property
    def lens_compare(self) -> Path:
        return self.root / "lens-compare"

    @property
    def report(self) -> Path:
        return self.root / "report.html"


class RunRecord:
    """``run.json``: the first start time and the fingerprints of finished stages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = atomic.read_json(path) or {}
        self.data.setdefault("created", dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
        self.data.setdefault("stages", {})

    @property
    def created(self) -> str:
        return str(self.data["created"])

    def fingerprint(self, stage: str) -> str | None:
        """The fingerprint ``stage`` finished with, None when it never finished."""
        entry = self.data["stages"].get(stage)
        return entry.get("fingerprint") if isinstance(entry, dict) else None

    def is_done(self, stage: str, fingerprint: str) -> bool:
        return self.fingerprint(stage) == fingerprint

    def mark_done(self, stage: str, fingerprint: str, **details: Any) -> None:
        """Record ``stage`` as finished (atomically, after its output is complete)."""
        self.data["stages"][stage] = {"fingerprint": fingerprint, **details}
        self.save()

    def forget(self, stage: str) -> None:
        """Drop ``stage`` (and so its output counts as unfinished) before redoing it."""
        if self.data["stages"].pop(stage, None) is not None:
            self.save()

    def save(self) -> None:
        atomic.write_json(self.path, self.data)
