"""The tracer side of the Ray engine: the manifest the driver writes, and the actors that trace it.

The driver writes the samples to trace as a Parquet manifest with one row per batch (``write_manifest``;
the batches are the local engine's, so both engines compute the same numbers). Ray Data reads it and runs
per batch row:

1. ``evolens.data.arrow.decode_images`` (CPU tasks, streaming ahead of the actors): each image file ->
   8-bit RGB pixels, or the one-line error that makes the sample fail;
2. ``TraceActor`` (one model per actor, on its own GPUs): ``Tracer.trace_images`` on the batch, then the
   records are committed to the trace directory as one part (``evolens.io.store.write_part``). Only small
   outcome rows (sample id, error) go back through Ray; metrics and hidden states never enter its object
   store.

A part's name is ``part-r<first input index, 9 digits>-<CRC-32 of the batch's sample ids>.parquet``: unique
per batch, so actors never collide, the same when Ray retries a batch (the retry rewrites the same part),
and sorted in input order.

Two small files let the driver know what the actors see, on the storage they share with it:
``write_marker`` (the driver's ``DIR/ray/driver-<token>``: an actor that cannot read it writes where the
driver does not read, and refuses to start) and ``record_attempt`` (one file per batch an actor begins to
trace: the driver counts them to find a batch that keeps killing its actor, ``attempts``).
"""

from __future__ import annotations

import socket
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from evolens.data.arrow import batches_table, image_of, sample_of
from evolens.data.resolve import Sample
from evolens.errors import EvolensError, UsageError
from evolens.io.atomic import write_bytes
from evolens.io.store import SETTINGS_KEYS, write_part
from evolens.models.loaded import LoadedModel
from evolens.tracing.spec import TraceSpec
from evolens.tracing.tracer import Tracer, trace_meta

OUTCOME_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("image", pa.string()), ("error", pa.string()), ("tokens", pa.int32())]
)
"""What an actor returns per sample: its id, its image path, why it failed (null when traced), and how many
tokens it generated."""

ModelLoader = Callable[[], LoadedModel]
"""Loads the model in an actor (picklable: Ray sends it to every actor)."""


def write_manifest(path: Path, batches: Sequence[Sequence[tuple[int, Sample]]]) -> Path:
    """Write batches of ``(index, sample)`` pairs as the Parquet manifest at ``path`` (atomically), one
    row per batch (``evolens.data.arrow.BATCHES_SCHEMA``)."""
    sink = pa.BufferOutputStream()
    pq.write_table(batches_table(batches), sink)
    return write_bytes(path, sink.getvalue().to_pybytes())


def part_name(indexes: Sequence[int], sample_ids: Sequence[str]) -> str:
    """The part a batch commits to (see the module docstring)."""
    digest = zlib.crc32("\n".join(sample_ids).encode("utf-8"))
    return f"part-r{min(indexes):09d}-{digest:08x}.parquet"


def write_marker(path: Path, token: str) -> Path:
    """Write the driver's marker ``path`` (``DIR/ray/driver-<token>``) holding ``token``, atomically: every
    actor must read it back (``shared_storage_refusal``)."""
    return write_bytes(path, token.encode("ascii"))


def shared_storage_refusal(out: Path, marker: Path, token: str) -> UsageError | None:
    """Why an actor must not trace into ``out``: it does not read ``token`` from the driver's ``marker``, so
    what it writes there never reaches the driver (a folder local to its node); None when it does."""
    try:
        seen: str | None = marker.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        seen = None
    if seen == token:
        return None
    return UsageError(
        f"the output folder {out} is not shared between the driver and node {socket.gethostname()} "
        "(actors must write where the driver reads: use shared storage, see docs/scale-out.md)"
    )


def record_attempt(folder: Path, part: str) -> None:
    """Leave a file in ``folder`` saying that this node begins to trace the batch of ``part`` (one per
    attempt: a Ray retry after the actor died is another one)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{part}.{uuid.uuid4().hex}").write_text(socket.gethostname(), encoding="utf-8")


def attempts(folder: Path) -> dict[str, list[Path]]:
    """The attempt files in ``folder`` by the part of their batch, one per attempt (``record_attempt``)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        found.setdefault(path.name.rsplit(".", 1)[0], []).append(path)
    return found


def attempt_node(attempt: Path) -> str:
    """The node that made ``attempt`` ("?" when its file cannot be read)."""
    try:
        return attempt.read_text(encoding="utf-8") or "?"
    except (OSError, UnicodeDecodeError):
        return "?"


class TraceActor:
    """A Ray Data callable class: loads the model once, then traces one batch per call and commits it.

    Args:
        load: builds the ``LoadedModel`` (e.g. ``load_model`` with the name, device and dtype).
        spec: the trace's settings, the same for every actor.
        out: the trace directory (on storage that every node shares).
        meta: the driver's meta.json; an actor whose model gives other settings refuses to start.
        marker: the driver's marker file in ``out`` (``write_marker``); an actor that does not read ``token``
            from it refuses to start, before loading the model.
        token: what ``marker`` holds.
        attempts: the folder where the actor records each batch it begins (``record_attempt``).
        threads: torch CPU threads (None: leave torch's default).

    An actor that refuses to start raises its ``EvolensError`` at its first batch, not in the constructor:
    Ray reports an error raised by the constructor as the actor's death, without the error itself.
    """

    def __init__(
        self,
        load: ModelLoader,
        spec: TraceSpec,
        out: str,
        meta: dict[str, Any],
        marker: str,
        token: str,
        attempts: str,
        threads: int | None = None,
    ) -> None:
        self.out = Path(out)
        self.attempts = Path(attempts)
        refusal = shared_storage_refusal(self.out, Path(marker), token)
        self.started: Tracer | EvolensError = (
            refusal if refusal is not None else _start(load, spec, meta, threads)
        )

    def __call__(self, table: pa.Table) -> pa.Table:
        """Trace each batch row (``DECODED_SCHEMA``; Ray passes one at a time) and commit it as one part;
        return one outcome per sample (``OUTCOME_SCHEMA``)."""
        tracer = self.started
        if isinstance(tracer, EvolensError):
            raise tracer
        outcomes = [
            outcome for row in table.to_pylist() for outcome in self.trace_batch(tracer, row["samples"])
        ]
        return pa.Table.from_pylist(outcomes, schema=OUTCOME_SCHEMA)

    def trace_batch(self, tracer: Tracer, decoded: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Trace one batch of decoded samples, commit the traced ones as one part, return the outcomes."""
        samples = [sample_of(sample) for sample in decoded]  # images as absolute files
        name = part_name([row["index"] for row in decoded], [s.sample_id for s in samples])
        record_attempt(self.attempts, name)
        given = {row["sample_id"]: row["image"] for row in decoded}  # as the user gave them
        errors = {s.sample_id: row["error"] for s, row in zip(samples, decoded, strict=True) if row["error"]}
        readable = [
            (sample, image_of(row))
            for sample, row in zip(samples, decoded, strict=True)
            if sample.sample_id not in errors
        ]
        records = tracer.trace_images(readable, lambda sample_id, _, error: errors.update({sample_id: error}))
        tokens = {record.sample_id: len(record.token_ids) for record in records}
        for record in records:
            record.image = given[record.sample_id]  # recorded as given, as the local engine records it
        if records:
            write_part(self.out, name, records)
        return [
            {
                "sample_id": sample.sample_id,
                "image": given[sample.sample_id],
                "error": errors.get(sample.sample_id),
                "tokens": tokens.get(sample.sample_id, 0),
            }
            for sample in samples
        ]


def _start(
    load: ModelLoader, spec: TraceSpec, meta: dict[str, Any], threads: int | None
) -> Tracer | EvolensError:
    """The actor's tracer, or why it refuses to start: a model that cannot be loaded on this node, or that
    gives other settings than the driver's ``meta``."""
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        loaded = load()
    except EvolensError as exc:
        return exc
    mine = trace_meta(loaded, spec)
    changed = [key for key in SETTINGS_KEYS if mine.get(key) != meta.get(key)]
    if changed:
        return UsageError(
            "a Ray actor loaded the model with other settings than the driver ("
            + "; ".join(f"{key}: {meta.get(key)!r} vs {mine.get(key)!r}" for key in changed)
            + "); every node needs the same model files and versions"
        )
    return Tracer(loaded, spec)
