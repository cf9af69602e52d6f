"""The finalize pass of a trace directory: every finished sample exactly once, with all its step rows.

A part is a pair of files with one name, ``steps/NAME`` and ``samples/NAME``; writers (both engines) write
the steps file first and the samples file last, so the samples file is the commit, and all step rows of a
sample are in the steps file of the part that commits it. A crash, an actor killed mid-write, a batch
retried after its first attempt had committed, or a driver killed while its actors still wrote can leave:

- a steps file without its samples file: removed (an orphan part);
- a committed sample whose step rows in its part are not exactly ``n_steps`` (the two files come from
  different attempts): dropped from its part, so that the next run traces it again;
- a sample committed in two parts: the copy in the first part by name is kept, the others dropped;
- step rows of samples that their part does not commit: dropped.

The optional ``image_tokens/NAME`` files (``--image-tokens``) follow their part: one without its samples
file is removed, and rows of samples the part does not keep are dropped.

Dropping rewrites the samples file first (the sample stops being finished), then the steps file; each
rewrite is atomic, and a crash between the two leaves only stray step rows, which the next pass drops.
The pass is idempotent and never drops a sample that is committed once with all its rows.

The pass deletes, so it runs only under the trace's lock (``evolens.io.lock``, held by the one writer):
run by anyone else, it would take another writer's temporaries and its steps part still waiting for its
samples part for leftovers. Readers never run it. A part that is not readable Parquet stops it with an
``InputError`` naming the file, which is left for the user to move away (it may hold the only copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evolens.errors import InputError, StorageError
from evolens.io.atomic import sweep_temporaries, write_bytes
from evolens.io.lock import TraceLock

PART_GLOB = "part-*.parquet"


@dataclass
class PartRepair:
    """What ``repair_parts`` removed (all empty for a consistent trace).

    Attributes:
        orphan_parts: names of steps files removed for having no samples file.
        incomplete: sample ids dropped because their step rows were not ``n_steps``.
        duplicates: sample ids dropped from a later part because an earlier part commits them.
        stray_step_rows: step rows removed because their part does not commit their sample.
    """

    orphan_parts: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    stray_step_rows: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.orphan_parts or self.incomplete or self.duplicates or self.stray_step_rows)


def finalize_trace(directory: str | Path, lock: TraceLock) -> PartRepair:
    """Sweep the temporaries of killed writers, then ``repair_parts``; ``lock`` is the trace's, held (a
    ``RuntimeError`` otherwise: see the module docstring)."""
    directory = Path(directory)
    if not (lock.held and lock.directory.resolve() == directory.resolve()):
        raise RuntimeError(f"the finalize pass of {directory} runs only under that trace's lock")
    for sub in ("", "samples", "steps", "hidden", "image_tokens"):
        sweep_temporaries(directory / sub)
    return repair_parts(directory)


def part_names(folder: Path) -> set[str]:
    """File names of the parts in ``folder`` (temporaries, which start with '.', are not parts)."""
    return {path.name for path in folder.glob(PART_GLOB)} if folder.is_dir() else set()


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The part file ``path`` (``columns`` of it, default all); a file that is not readable Parquet is an
    ``InputError`` naming it, never deleted (it may be the only copy of its samples)."""
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError as exc:
        raise InputError(
            f"{path}: removed while it was read (does another process write this trace?)"
        ) from exc
    except (pa.ArrowException, OSError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"{path}: not a readable Parquet file ({detail}); move it away or delete it to continue"
        ) from exc


def repair_parts(directory: str | Path) -> PartRepair:
    """Make every committed sample appear once, with exactly ``n_steps`` step rows (see the module doc).
    Only under the trace's lock (``finalize_trace``)."""
    samples_dir, steps_dir = Path(directory) / "samples", Path(directory) / "steps"
    tokens_dir = Path(directory) / "image_tokens"
    repair = PartRepair()
    committed_names = part_names(samples_dir)
    for name in sorted(part_names(steps_dir) - committed_names):
        _remove(steps_dir / name)
        repair.orphan_parts.append(name)
    for name in sorted(part_names(tokens_dir) - committed_names):
        _remove(tokens_dir / name)
    seen: set[str] = set()
    for name in sorted(committed_names):
        samples = read_part(samples_dir / name)
        rows_per_sample = _step_rows_per_sample(steps_dir / name)
        ids = samples.column("sample_id").to_pylist()
        keep: list[bool] = []
        for sample_id, n_steps in zip(ids, samples.column("n_steps").to_pylist(), strict=True):
            complete = rows_per_sample.get(sample_id, 0) == n_steps
            if sample_id in seen:
                repair.duplicates.append(sample_id)
            elif not complete:
                repair.incomplete.append(sample_id)
            keep.append(complete and sample_id not in seen)
            if keep[-1]:
                seen.add(sample_id)
        kept_ids = {sample_id for sample_id, kept in zip(ids, keep, strict=True) if kept}
        if not all(keep):
            _rewrite(samples_dir / name, samples.filter(pa.array(keep, pa.bool_())))
        stray = sum(count for sample_id, count in rows_per_sample.items() if sample_id not in kept_ids)
        if stray:
            steps = read_part(steps_dir / name)
            mask = pc.is_in(steps.column("sample_id"), value_set=pa.array(sorted(kept_ids), pa.string()))
            _rewrite(steps_dir / name, steps.filter(mask))
            repair.stray_step_rows += stray
        if (tokens_dir / name).exists():
            tokens = read_part(tokens_dir / name)
            mask = pc.is_in(tokens.column("sample_id"), value_set=pa.array(sorted(kept_ids), pa.string()))
            if not pc.all(mask).as_py():
                _rewrite(tokens_dir / name, tokens.filter(mask))
    return repair


def _step_rows_per_sample(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    counts = pc.value_counts(read_part(path, ["sample_id"]).column("sample_id"))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def _rewrite(path: Path, table: pa.Table) -> None:
    """Replace the part file ``path`` by ``table`` (atomically), or remove it when ``table`` is empty."""
    if table.num_rows == 0:
        _remove(path)
        return
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(path, sink.getvalue().to_pybytes())


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from exc
