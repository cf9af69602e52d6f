"""What every source shares: the rows it yields, the ``--limit/--shuffle/--seed`` selection, prompt pairing.

A source first lists its *items* (an image, or a manifest/query row), the selection then picks among the
items (shuffle with a seeded RNG, then keep the first ``limit``), and each kept item becomes one sample per
prompt. Ids are stable: the same data and selection give the same ids in the same order on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

Item = TypeVar("Item")
TAG_SKIPPED_WORDS = frozenset(
    re.split(r"\s+", "a an the is are of in on at this that what which how there please image picture do")
)
"""Words a prompt tag leaves out, so that it names what the prompt asks about."""


@dataclass(frozen=True)
class DataRow:
    """One (image, prompt) pair to trace: what a line of a JSONL manifest holds.

    Attributes:
        sample_id: unique within the dataset; stable across runs; any text (kept verbatim: files named
            after a sample use ``evolens.io.store.file_stem``).
        image: path of the image file, None for a text-only prompt.
        prompt: the user prompt (before the chat template).
        ground_truth: what the source knows about the image (objects, captions, ids), or None.
        group: a label the views can colour or facet by (a folder's class subfolder, a manifest's
            ``group``), or None.
        response: what to score instead of generating (teacher forcing): text (tokenized by the model's
            tokenizer, no special tokens added) or exact token ids (e.g. a trace's own generation); None
            generates.
    """

    sample_id: str
    image: Path | None
    prompt: str
    ground_truth: dict[str, Any] | None = field(default=None, compare=False)
    group: str | None = field(default=None, compare=False)
    response: str | tuple[int, ...] | None = field(default=None, compare=False)

    def to_manifest(self) -> dict[str, Any]:
        """The row as a JSONL manifest object: id, image, prompt and (when known) ground_truth and group."""
        row: dict[str, Any] = {"id": self.sample_id, "image": None if self.image is None else str(self.image)}
        row["prompt"] = self.prompt
        if self.ground_truth is not None:
            row["ground_truth"] = self.ground_truth
        if self.group is not None:
            row["group"] = self.group
        if self.response is not None:
            row["response"] = self.response if isinstance(self.response, str) else list(self.response)
        return row


def select(items: Sequence[Item], limit: int | None, shuffle: bool, seed: int) -> list[Item]:
    """``items`` shuffled with ``seed`` (when asked), then at most ``limit`` of them."""
    chosen = list(items)
    if shuffle:
        random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit is not None else chosen


def pair_with_prompts(
    base_id: str,
    image: Path | None,
    prompts: Sequence[str],
    ground_truth: dict[str, Any] | None = None,
    group: str | None = None,
) -> list[DataRow]:
    """One row per prompt. With one prompt the id is ``base_id``; with several, ``base_id`` plus a short
    tag of the prompt, so adding a prompt later keeps the other rows' ids."""
    if len(prompts) == 1:
        return [DataRow(base_id, image, prompts[0], ground_truth, group)]
    return [
        DataRow(f"{base_id}--{prompt_tag(prompt)}", image, prompt, ground_truth, group) for prompt in prompts
    ]


def prompt_tag(prompt: str) -> str:
    """'What is the color of the shape?' -> 'color-shape-0f3c62': its first two content words and a short
    hash of the whole prompt (so different prompts never share a tag), id-safe."""
    words = [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if w not in TAG_SKIPPED_WORDS]
    digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:6]
    return "-".join([*words[:2], digest])


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbers by value: 'flower2' before 'flower10'."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", text))


def unique_ids(rows: list[DataRow]) -> list[DataRow]:
    """Make repeated ids unique by appending '-2', '-3', ... in order (e.g. cat.png and cat.jpg)."""
    used: set[str] = set()
    unique = []
    for row in rows:
        sample_id, count = row.sample_id, 1
        while sample_id in used:
            count += 1
            sample_id = f"{row.sample_id}-{count}"
        used.add(sample_id)
        unique.append(row if sample_id == row.sample_id else dataclasses.replace(row, sample_id=sample_id))
    return unique
