"""The finalize pass (``evolens.io.repair``) on traces broken the ways crashes and retries break them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from evolens.io.lock import TraceLock
from evolens.io.repair import finalize_trace, repair_parts
from evolens.io.store import TraceWriter, finished_sample_ids, read_trace, write_part
from evolens.io.trace import load_trace
from tests.test_store import META, record


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """An empty trace directory (meta.json written)."""
    TraceWriter.open(tmp_path, META).close()
    return tmp_path


def step_rows(directory: Path) -> dict[str, int]:
    """Step rows per sample id over every steps part."""
    counts = pc.value_counts(pq.read_table(directory / "steps").column("sample_id"))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def committed(directory: Path) -> list[str]:
    """Sample ids of every samples row (repeats included)."""
    return pq.read_table(directory / "samples").column("sample_id").to_pylist()


def assert_exactly_once(directory: Path, expected: dict[str, int]) -> None:
    """Every sample in ``expected`` committed once, with exactly its ``n_steps`` step rows, nothing else."""
    assert sorted(committed(directory)) == sorted(expected)
    assert step_rows(directory) == expected
    tables = read_trace(directory)
    assert dict(zip(tables.samples["sample_id"], tables.samples["n_steps"], strict=True)) == expected


def test_a_consistent_trace_is_left_alone(trace_dir: Path) -> None:
    with TraceWriter.open(trace_dir, META) as writer:
        writer.write([record("a", 3, 1), record("b", 2, 2)])
        write_part(trace_dir, "part-r000000002-0000abcd.parquet", [record("c", 4, 3)])
        before = {path: path.read_bytes() for path in trace_dir.rglob("*.parquet")}
        repair = writer.finalize()
    assert not repair.changed
    assert {path: path.read_bytes() for path in trace_dir.rglob("*.parquet")} == before
    assert_exactly_once(trace_dir, {"a": 3, "b": 2, "c": 4})


def test_orphan_steps_part_is_removed(trace_dir: Path) -> None:
    write_part(trace_dir, "part-r000000000-00000001.parquet", [record("a", 3, 1)])
    write_part(trace_dir, "part-r000000001-00000002.parquet", [record("b", 2, 2)])
    (trace_dir / "samples" / "part-r000000001-00000002.parquet").unlink()  # killed between the renames
    repair = repair_parts(trace_dir)
    assert repair.orphan_parts == ["part-r000000001-00000002.parquet"]
    assert_exactly_once(trace_dir, {"a": 3})


def test_steps_and_samples_from_different_attempts_drop_the_mismatched_sample(trace_dir: Path) -> None:
    """A retried batch that generated other lengths, killed between its two renames: the steps file is the
    retry's, the samples file the first attempt's. Samples whose row count disagrees are dropped (and
    traced again by the next run); the others stay."""
    name = "part-r000000000-00000001.parquet"
    write_part(trace_dir, name, [record("a", 3, 1), record("b", 2, 2)])
    first_samples = (trace_dir / "samples" / name).read_bytes()
    write_part(trace_dir, name, [record("a", 3, 1), record("b", 5, 2)])
    (trace_dir / "samples" / name).write_bytes(first_samples)
    repair = repair_parts(trace_dir)
    assert repair.incomplete == ["b"] and repair.stray_step_rows == 5
    assert_exactly_once(trace_dir, {"a": 3})
    assert finished_sample_ids(trace_dir) == {"a"}


def test_a_sample_committed_twice_keeps_the_first_part(trace_dir: Path) -> None:
    """A driver killed while an actor still wrote, then a rerun that traced the same sample in another
    batch: two committed copies; the first part by name keeps it."""
    write_part(trace_dir, "part-r000000000-00000001.parquet", [record("a", 3, 1), record("b", 2, 2)])
    write_part(trace_dir, "part-r000000001-00000002.parquet", [record("b", 2, 2), record("c", 4, 3)])
    write_part(trace_dir, "part-r000000001-00000003.parquet", [record("b", 2, 2)])
    repair = repair_parts(trace_dir)
    assert repair.duplicates == ["b", "b"] and repair.stray_step_rows == 4
    assert_exactly_once(trace_dir, {"a": 3, "b": 2, "c": 4})
    assert not (trace_dir / "samples" / "part-r000000001-00000003.parquet").exists()
    assert not (trace_dir / "steps" / "part-r000000001-00000003.parquet").exists()


def test_a_crash_between_the_two_rewrites_is_finished_by_the_next_pass(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_part(trace_dir, "part-r000000000-00000001.parquet", [record("a", 3, 1)])
    write_part(trace_dir, "part-r000000001-00000002.parquet", [record("a", 3, 1), record("b", 2, 2)])
    import evolens.io.repair

    real_write = evolens.io.repair.write_bytes

    def crash_on_steps(path: Path, data: bytes) -> Path:
        if path.parent.name == "steps":
            raise KeyboardInterrupt  # killed after the samples rewrite, before the steps rewrite
        return real_write(path, data)

    monkeypatch.setattr(evolens.io.repair, "write_bytes", crash_on_steps)
    with pytest.raises(KeyboardInterrupt):
        repair_parts(trace_dir)
    monkeypatch.undo()
    assert sorted(committed(trace_dir)) == ["a", "b"]  # the duplicate is already uncommitted
    assert step_rows(trace_dir)["a"] == 6  # its stray rows are still there
    repair = repair_parts(trace_dir)
    assert repair.stray_step_rows == 3 and not repair.duplicates
    assert_exactly_once(trace_dir, {"a": 3, "b": 2})
    assert not repair_parts(trace_dir).changed  # idempotent


def test_local_writer_numbers_its_parts_beside_ray_parts(trace_dir: Path) -> None:
    """A trace begun by the Ray engine and continued by the local one (or the other way round)."""
    write_part(trace_dir, "part-r000000000-00000001.parquet", [record("a", 3, 1)])
    with TraceWriter.open(trace_dir, META) as writer:
        assert writer.finished == {"a"}
        writer.write([record("b", 2, 2)])
        writer.write([record("c", 1, 3)])
    names = sorted(path.name for path in (trace_dir / "samples").iterdir())
    assert [name[:11] for name in names] == ["part-00001-", "part-00002-", "part-r00000"]
    assert_exactly_once(trace_dir, {"a": 3, "b": 2, "c": 1})


def test_opening_a_trace_runs_the_finalize_pass(trace_dir: Path) -> None:
    write_part(trace_dir, "part-r000000000-00000001.parquet", [record("a", 3, 1)])
    write_part(trace_dir, "part-r000000001-00000002.parquet", [record("a", 3, 1)])
    shutil.copy(
        trace_dir / "steps" / "part-r000000000-00000001.parquet", trace_dir / "steps" / "part-x.parquet"
    )
    (trace_dir / "steps" / ".tmp-part-r000000002-00000003.parquet.abc").write_bytes(b"half")
    with TraceWriter.open(trace_dir, META) as writer:
        assert writer.finished == {"a"}
    assert_exactly_once(trace_dir, {"a": 3})
    assert sorted(path.name for path in (trace_dir / "steps").iterdir()) == [
        "part-r000000000-00000001.parquet"
    ]


def test_the_finalize_pass_runs_only_under_the_writers_lock(trace_dir: Path, tmp_path_factory) -> None:
    """It deletes temporaries and orphan parts: run by anyone but the one writer, it would delete another
    writer's files in flight."""
    elsewhere = tmp_path_factory.mktemp("other")
    with TraceLock.acquire(elsewhere) as other, pytest.raises(RuntimeError, match="lock"):
        finalize_trace(trace_dir, other)
    lock = TraceLock.acquire(trace_dir)
    assert not finalize_trace(trace_dir, lock).changed
    lock.release()
    with pytest.raises(RuntimeError, match="lock"):
        finalize_trace(trace_dir, lock)


def test_readers_leave_a_trace_being_written_untouched(trace_dir: Path) -> None:
    """``read_trace``, ``load_trace`` (``evolens analyze``) and ``finished_sample_ids`` on a folder that a
    writer is filling: its temporaries and its steps part still without samples part stay."""
    with TraceWriter.open(trace_dir, META) as writer:
        writer.write([record("a", 3, 1)])
        write_part(trace_dir, "part-r000000001-00000002.parquet", [record("b", 2, 2)])
        (trace_dir / "samples" / "part-r000000001-00000002.parquet").unlink()  # its commit is still to come
        (trace_dir / "samples" / ".tmp-part-r000000001-00000002.parquet.abc").write_bytes(b"half")
        before = sorted(path for path in trace_dir.rglob("*") if path.is_file())
        assert read_trace(trace_dir).samples["sample_id"].tolist() == ["a"]
        assert load_trace(trace_dir).sample_ids == ["a"]
        assert finished_sample_ids(trace_dir) == {"a"}
        assert sorted(path for path in trace_dir.rglob("*") if path.is_file()) == before
