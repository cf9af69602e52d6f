"""The trace dataset on disk (docs/trace-format.md): written as it goes, resumable, plain Parquet.

Each batch of finished samples becomes one part (``write_part``): ``steps/NAME`` then ``samples/NAME``,
each written whole to a temporary name and renamed. The local engine names its parts
``part-NNNNN-<8 random hex digits>.parquet`` (numbered on from the highest part number there, and unique
even where two writers raced), the Ray engine ``part-r<first input index>-<batch hash>.parquet``; readers
take any ``part-*.parquet``. A sample is finished when its row is in ``samples/``; the finalize pass
(``evolens.io.repair``, run whenever a writer opens a trace) removes what a crash left half written. A crash
therefore loses at most the samples in flight. One writer at a time: ``TraceWriter`` holds the folder's
lock (``evolens.io.lock``) from ``open`` to ``close``; readers take no lock and change nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evolens.errors import InputError, StorageError, UsageError
from evolens.io.atomic import json_line, json_text, read_json, write_bytes, write_json
from evolens.io.image_tokens import IMAGE_TOKENS, ImageTokenRecord, image_tokens_table
from evolens.io.lock import TraceLock
from evolens.io.repair import PART_GLOB, PartRepair, finalize_trace, part_names, read_part
from evolens.vocabulary import STORED

if TYPE_CHECKING:
    import torch

PART = re.compile(r"^part-(\d+)(?:-[0-9a-f]{8})?\.parquet$")
"""The local engine's part names, with their number: ``part-00012-1f2e3d4c.parquet`` (in older traces
``part-00012.parquet``)."""
FAILURES = "failures.jsonl"
SAFE_STEM = re.compile(r"[A-Za-z0-9._-]{1,120}")
INT_LIST = pa.list_(pa.int32())
ARROW_LEAVES = {"float32": pa.float32(), "int32": pa.int32(), "uint8": pa.uint8()}


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type written as in ``evolens.vocabulary`` ("list<list<int32>>") as a pyarrow type."""
    if text.startswith("list<") and text.endswith(">"):
        return pa.list_(arrow_type(text[len("list<") : -1]))
    if text not in ARROW_LEAVES:
        raise ValueError(f"no Arrow type '{text}'")
    return ARROW_LEAVES[text]


SAMPLES_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("image", pa.string()),
        ("image_sha256", pa.string()),
        ("prompt", pa.string()),
        ("text", pa.string()),
        ("token_ids", INT_LIST),
        ("n_steps", pa.int32()),
        ("ground_truth", pa.string()),
        ("group", pa.string()),
        ("image_used", pa.string()),
    ]
)
STEPS_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("step", pa.int32()),
        ("token_id", pa.int32()),
        ("token", pa.string()),
        *((m.name, arrow_type(m.arrow or "")) for m in STORED),
    ]
)
"""One row per sample x step: who, which step, the emitted token, then every stored metric
(``evolens.vocabulary.STORED``, in its order)."""
SETTINGS_KEYS = (
    "model",
    "revision",
    "dtype",
    "lens",
    "lens_sha256",
    "top_k",
    "paper_js",
    "decoding",
    "seed",
    "hidden",
    "mode",
    "condition",
    "image_tokens",
)
"""meta.json keys that must match for a rerun to add to an existing trace."""
SETTINGS_DEFAULTS = {"mode": "generate", "condition": "image", "image_tokens": None}
"""What a trace written before a setting existed did (its meta.json lacks the key)."""


@dataclass
class SampleRecord:
    """One finished sample: its inputs, its generation, and its per-step metrics.

    ``metrics`` maps each stored metric (``evolens.vocabulary.STORED``) to an array with n_steps rows:
    (n_steps, L+1), (n_steps, L) or (n_steps, L+1, k) by the metric's ``per``; ``paper_js`` may be None.
    """

    sample_id: str
    image: str | None
    prompt: str
    text: str
    token_ids: list[int]
    tokens: list[str]
    metrics: dict[str, np.ndarray | None]
    ground_truth: dict[str, Any] | None = None
    image_sha256: str | None = None
    hidden: dict[str, torch.Tensor] = field(default_factory=dict)
    group: str | None = None
    image_used: str | None = None
    """What the model was shown (``evolens.tracing.conditions``): the image file, a blank's colour and
    size, another sample's image; None for no image."""
    image_tokens: ImageTokenRecord | None = None
    """The image-token lens of the sample (``--image-tokens``), its rows of the ``image_tokens/`` table."""


@dataclass
class TraceTables:
    """A trace read back: meta.json, one row per finished sample, one row per sample x step."""

    meta: dict[str, Any]
    samples: pd.DataFrame
    steps: pd.DataFrame


class TraceWriter:
    """Appends finished samples to a trace directory, holding its lock (``evolens.io.lock``) from ``open``
    until ``close`` or the end of its ``with`` block; see the module docstring for the guarantees."""

    def __init__(self, directory: Path, meta: dict[str, Any], lock: TraceLock) -> None:
        self.directory = directory
        self.meta = meta
        self.lock = lock
        self.finished: set[str] = finished_sample_ids(directory)
        self._next_part = 1 + max(
            _part_numbers(directory / "samples") | _part_numbers(directory / "steps") | {0}
        )

    @classmethod
    def open(cls, directory: str | Path, meta: dict[str, Any]) -> TraceWriter:
        """Lock ``directory`` (created if needed) and create or reopen the trace there for the same settings.

        Another writer holding it, or a different setting, is a ``UsageError``; the lock is released
        whenever opening fails.
        """
        directory = Path(directory)
        _make_folders(directory)
        lock = TraceLock.acquire(directory)
        try:
            return cls._open_locked(directory, meta, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(cls, directory: Path, meta: dict[str, Any], lock: TraceLock) -> TraceWriter:
        _make_folders(directory, "samples", "steps")
        existing = read_json(directory / "meta.json")
        if existing is not None:
            _check_same_settings(directory, existing, meta)
            meta = {**meta, "created": existing.get("created", meta.get("created"))}
        write_json(directory / "meta.json", meta)
        finalize_trace(directory, lock)
        return cls(directory, meta, lock)

    def close(self) -> None:
        """Release the trace's lock; the writer writes no more (closing twice is fine)."""
        self.lock.release()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def finalize(self) -> PartRepair:
        """Run the finalize pass (``evolens.io.repair.finalize_trace``) under this writer's lock, e.g. after
        other processes (the Ray engine's actors) wrote parts into the trace."""
        return finalize_trace(self.directory, self._held_lock())

    def write(self, records: list[SampleRecord]) -> None:
        """Write one part holding ``records`` (hidden states first, then steps, then samples)."""
        if not records:
            return
        self._held_lock()
        write_part(self.directory, f"part-{self._next_part:05d}-{uuid.uuid4().hex[:8]}.parquet", records)
        self._next_part += 1
        self.finished.update(record.sample_id for record in records)

    def finished_inputs(self) -> dict[str, tuple[str, str | None, list[int]]]:
        """Each finished sample's (prompt, image_sha256, token_ids) as traced: what tells a changed input
        apart (the token ids matter where they were given: a scored response)."""
        found: dict[str, tuple[str, str | None, list[int]]] = {}
        for path in sorted((self.directory / "samples").glob(PART_GLOB)):
            table = read_part(path, ["sample_id", "prompt", "image_sha256", "token_ids"]).to_pydict()
            for sample_id, prompt, sha, tokens in zip(
                table["sample_id"], table["prompt"], table["image_sha256"], table["token_ids"], strict=True
            ):
                found[sample_id] = (prompt, sha, tokens)
        return found

    def remove(self, sample_ids: set[str]) -> list[str]:
        """Take finished samples out of the trace (their inputs changed or left); returns those removed.

        Each part holding one is rewritten without it, the samples part first: a kill in between leaves
        steps rows without a sample, which readers ignore and the next removal drops.
        """
        removed = sorted(self.finished & set(sample_ids))
        if not removed:
            return []
        self._held_lock()
        folders = ("samples", "steps", IMAGE_TOKENS)
        for name in sorted(set().union(*(part_names(self.directory / sub) for sub in folders))):
            for sub in folders:
                path = self.directory / sub / name
                if not path.exists():
                    continue
                table = read_part(path)
                keep = pc.invert(pc.is_in(table.column("sample_id"), pa.array(removed)))
                if not pc.all(keep).as_py():
                    write_bytes(path, _parquet_bytes(table.filter(keep)))
        for sample_id in removed:
            hidden_path(self.directory, sample_id).unlink(missing_ok=True)
        self.finished.difference_update(removed)
        return removed

    def record_failure(self, sample_id: str, image: str | None, error: str) -> None:
        """Append one failed input to failures.jsonl, as one whole line.

        The line goes out in one ``os.write`` to the file opened for appending, then to disk (fsync): a kill
        or a full disk can cut only that line short, never one before it, and a line written after a cut one
        starts a line of its own, so the cut one is all that ``read_failures`` drops (its sample is then
        neither finished nor failed, and traced again). Rewriting the whole file for each failure would rule
        out the cut line, but costs quadratic time on a dataset of broken images.
        """
        path = self.directory / FAILURES
        self._held_lock()
        line = json_line({"sample_id": sample_id, "image": image, "error": error}).encode("utf-8")
        try:
            descriptor = os.open(
                path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o666
            )
            try:
                if not _ends_a_line(descriptor):
                    line = b"\n" + line  # the last line was cut short: keep it apart from this one
                if os.write(descriptor, line) != len(line):
                    raise OSError(f"only part of a line was written to {path} (is the disk full?)")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def forget_failures(self, sample_ids: set[str]) -> None:
        """Drop earlier failures of samples about to be retried (failures.jsonl lists the latest outcome);
        the file is rewritten whole (atomically), which also drops a line a kill cut short."""
        path = self.directory / FAILURES
        if not path.exists():
            return
        self._held_lock()
        kept = [line for line in read_failures(self.directory) if line.get("sample_id") not in sample_ids]
        write_bytes(path, "".join(json_line(line) for line in kept).encode())

    def _held_lock(self) -> TraceLock:
        """The writer's lock; writing after ``close`` is a bug (nothing would keep another writer out)."""
        if not self.lock.held:
            raise RuntimeError(f"the writer of {self.directory} is closed")
        return self.lock


def write_part(directory: Path, name: str, records: list[SampleRecord]) -> None:
    """Commit ``records`` as the part ``name``: their hidden states, their ``image_tokens/name`` (when they
    have image-token lenses), then ``steps/name``, then ``samples/name`` (the commit), each file atomically.
    Rewriting a part with the same records changes nothing for readers, which is what makes a retried
    batch harmless."""
    for record in records:
        if record.hidden:
            _write_hidden(directory, record)
    lensed = [record for record in records if record.image_tokens is not None]
    if lensed:
        table = image_tokens_table(
            [r.sample_id for r in lensed], [r.image_tokens for r in lensed if r.image_tokens is not None]
        )
        write_bytes(directory / IMAGE_TOKENS / name, _parquet_bytes(table))
    steps_bytes = _parquet_bytes(_steps_table(records))
    samples_bytes = _parquet_bytes(_samples_table(records))
    write_bytes(directory / "steps" / name, steps_bytes)
    write_bytes(directory / "samples" / name, samples_bytes)


def _write_hidden(directory: Path, record: SampleRecord) -> None:
    from safetensors.torch import save

    data = save({name: tensor.contiguous() for name, tensor in record.hidden.items()})
    write_bytes(hidden_path(directory, record.sample_id), data)


def file_stem(sample_id: str) -> str:
    """A file name for a sample: the id itself when it is file-safe (letters, digits, '.', '_', '-'; no
    leading dot), else its safe characters and a hash of the whole id, so different ids never collide."""
    if SAFE_STEM.fullmatch(sample_id) and not sample_id.startswith("."):
        return sample_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._")[:80] or "sample"
    return f"{cleaned}-{hashlib.sha1(sample_id.encode('utf-8')).hexdigest()[:10]}"


def hidden_path(directory: str | Path, sample_id: str) -> Path:
    """Where a trace keeps one sample's hidden states."""
    return Path(directory) / "hidden" / f"{file_stem(sample_id)}.safetensors"


def finished_sample_ids(directory: str | Path) -> set[str]:
    """Ids of the samples whose rows are in ``samples/`` (empty for a new directory)."""
    folder = Path(directory) / "samples"
    ids: set[str] = set()
    for path in sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []:
        ids.update(read_part(path, ["sample_id"]).column("sample_id").to_pylist())
    return ids


def read_failures(directory: str | Path) -> list[dict[str, Any]]:
    """The failures in failures.jsonl (empty when there is none).

    A line that is not a whole failure record (one that a kill or a full disk cut short) is dropped with a
    warning naming it, so that it never blocks a rerun; the writer's next rewrite leaves it out.
    """
    path = Path(directory) / FAILURES
    if not path.exists():
        return []
    failures = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        failure = _failure(line)
        if failure is None:
            warnings.warn(
                f"{path}: line {number} is not a whole failure record (cut short by a kill or a full "
                "disk?); dropped",
                stacklevel=2,
            )
        else:
            failures.append(failure)
    return failures


def _failure(line: bytes) -> dict[str, Any] | None:
    """One line of failures.jsonl as its object, or None when it is not a whole failure record."""
    try:
        failure = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return failure if isinstance(failure, dict) and "sample_id" in failure else None


def _ends_a_line(descriptor: int) -> bool:
    """Whether the file open at ``descriptor`` is empty or ends with a newline."""
    size = os.fstat(descriptor).st_size
    if size == 0:
        return True
    os.lseek(descriptor, size - 1, os.SEEK_SET)
    return os.read(descriptor, 1) == b"\n"


def read_trace(directory: str | Path) -> TraceTables:
    """meta, samples and steps of a trace; steps of unfinished samples are left out, order is by part."""
    directory = Path(directory)
    meta = read_json(directory / "meta.json")
    if meta is None:
        raise InputError(f"{directory}: not a trace directory (no meta.json)")
    samples = _read_parts(directory / "samples", SAMPLES_SCHEMA)
    steps = _read_parts(directory / "steps", STEPS_SCHEMA)
    steps = steps[steps["sample_id"].isin(set(samples["sample_id"]))].reset_index(drop=True)
    return TraceTables(meta, samples, steps)


def _read_parts(folder: Path, schema: pa.Schema) -> pd.DataFrame:
    paths = sorted(folder.glob(PART_GLOB))
    tables = [read_part(path) for path in paths]
    if not tables:
        return schema.empty_table().to_pandas()
    # parts written by an earlier evolens may lack a newer column (e.g. "group"): it reads as null there
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def _part_numbers(folder: Path) -> set[int]:
    found = (PART.match(path.name) for path in folder.iterdir()) if folder.is_dir() else ()
    return {int(match.group(1)) for match in found if match}


def _make_folders(directory: Path, *subfolders: str) -> None:
    """Create the trace ``directory`` (with its parents) and its ``subfolders``."""
    try:
        for folder in (directory, *(directory / sub for sub in subfolders)):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the trace directory {directory}: {exc.strerror or exc}") from exc


def _check_same_settings(directory: Path, existing: dict[str, Any], meta: dict[str, Any]) -> None:
    def setting(values: dict[str, Any], key: str) -> Any:
        return values.get(key, SETTINGS_DEFAULTS.get(key))

    changed = [key for key in SETTINGS_KEYS if setting(existing, key) != setting(meta, key)]
    if changed:
        detail = "; ".join(
            f"{key}: {setting(existing, key)!r} there, {setting(meta, key)!r} now" for key in changed
        )
        raise UsageError(
            f"{directory} holds a trace made with other settings ({detail}); choose another --out"
        )


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table, sink, compression="zstd")
    except OSError as exc:
        raise StorageError(f"cannot encode a trace part: {exc}") from exc
    return sink.getvalue().to_pybytes()


def _samples_table(records: list[SampleRecord]) -> pa.Table:
    columns = {
        "sample_id": [r.sample_id for r in records],
        "image": [r.image for r in records],
        "image_sha256": [r.image_sha256 for r in records],
        "prompt": [r.prompt for r in records],
        "text": [r.text for r in records],
        "token_ids": [r.token_ids for r in records],
        "n_steps": [len(r.token_ids) for r in records],
        "ground_truth": [
            None if r.ground_truth is None else json_text(r.ground_truth, indent=None) for r in records
        ],
        "group": [r.group for r in records],
        "image_used": [r.image_used for r in records],
    }
    return pa.table(columns, schema=SAMPLES_SCHEMA)


def _steps_table(records: list[SampleRecord]) -> pa.Table:
    n_rows = [len(r.token_ids) for r in records]
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array([r.sample_id for r in records for _ in r.token_ids], pa.string()),
        "step": pa.array(np.concatenate([np.arange(n) for n in n_rows]), pa.int32()),
        "token_id": pa.array(np.concatenate([r.token_ids for r in records]), pa.int32()),
        "token": pa.array([t for r in records for t in r.tokens], pa.string()),
    }
    for name in STEPS_SCHEMA.names[4:]:
        parts = [r.metrics.get(name) for r in records]
        kind = STEPS_SCHEMA.field(name).type
        if any(part is None for part in parts):
            columns[name] = pa.nulls(sum(n_rows), kind)
        else:
            columns[name] = _nested_lists(np.concatenate(parts), kind)  # type: ignore[arg-type]
    return pa.table(columns, schema=STEPS_SCHEMA)


def _nested_lists(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """(rows, n) -> list<T>, (rows, n, k) -> list<list<T>>, without Python loops over the values."""
    leaf = kind
    while pa.types.is_list(leaf):
        leaf = leaf.value_type
    array: pa.Array = pa.array(values.reshape(-1), leaf)
    for size in reversed(values.shape[1:]):
        offsets = np.arange(0, len(array) + 1, size, dtype=np.int32)
        array = pa.ListArray.from_arrays(pa.array(offsets), array)
    return array
