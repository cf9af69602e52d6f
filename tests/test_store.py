"""The trace dataset on disk, without a model: round trip, plain pyarrow, resume bookkeeping, errors."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import evolens.io.atomic
from evolens.errors import InputError, StorageError, UsageError
from evolens.io.repair import repair_parts
from evolens.io.store import SampleRecord, TraceWriter, finished_sample_ids, read_failures, read_trace

LAYERS, TOP_K = 4, 3
META = {
    "model": "m",
    "revision": None,
    "dtype": "float32",
    "lens": "normed",
    "top_k": TOP_K,
    "paper_js": False,
    "decoding": {"max_new_tokens": 8},
    "seed": 0,
    "hidden": None,
    "n_layers": LAYERS,
}


def record(sample_id: str, n_steps: int, seed: int, paper: bool = False) -> SampleRecord:
    rng = np.random.default_rng(seed)
    per_layer = {
        n: rng.random((n_steps, LAYERS + 1), dtype=np.float32)
        for n in ("prob", "entropy", "jsd_last", "kl_last")
    }
    return SampleRecord(
        sample_id=sample_id,
        image=None,
        prompt=f"prompt {sample_id}",
        text=f"text {sample_id}",
        token_ids=list(rng.integers(0, 100, n_steps)),
        tokens=[f"t{i}" for i in range(n_steps)],
        metrics={
            **per_layer,
            "rank": rng.integers(0, 50, (n_steps, LAYERS + 1)).astype(np.int32),
            "jsd_next": rng.random((n_steps, LAYERS), dtype=np.float32),
            "paper_js": rng.random((n_steps, LAYERS), dtype=np.float32) if paper else None,
            "topk_ids": rng.integers(0, 100, (n_steps, LAYERS + 1, TOP_K)).astype(np.int32),
            "topk_probs": rng.random((n_steps, LAYERS + 1, TOP_K), dtype=np.float32),
        },
        ground_truth={"objects": ["red circle"]} if seed % 2 else None,
    )


def test_round_trip_with_pandas_and_plain_pyarrow(tmp_path: Path) -> None:
    records = [record("a", 3, 1), record("b", 5, 2)]
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write(records[:1])
        writer.write(records[1:])
    tables = read_trace(tmp_path)
    assert list(tables.samples["sample_id"]) == ["a", "b"]
    assert list(tables.samples["n_steps"]) == [3, 5]
    assert json.loads(tables.samples["ground_truth"][0]) == {"objects": ["red circle"]}
    steps = tables.steps
    assert len(steps) == 8 and list(steps["step"][:3]) == [0, 1, 2]
    b_rows = steps[steps["sample_id"] == "b"]
    np.testing.assert_array_equal(np.stack(b_rows["prob"].to_numpy()), records[1].metrics["prob"])
    np.testing.assert_array_equal(np.stack(b_rows["rank"].to_numpy()), records[1].metrics["rank"])
    topk = np.stack([np.stack(row) for row in b_rows["topk_ids"]])
    np.testing.assert_array_equal(topk, records[1].metrics["topk_ids"])
    assert steps["paper_js"].isna().all()
    plain = pq.read_table(tmp_path / "steps")  # a directory of parts, read by pyarrow alone
    assert plain.num_rows == 8
    assert str(plain.schema.field("topk_probs").type) == "list<element: list<element: float>>"
    assert pq.read_table(tmp_path / "samples").column("token_ids").to_pylist()[0] == records[0].token_ids
    assert finished_sample_ids(tmp_path) == {"a", "b"}


def test_reopening_continues_and_other_settings_are_refused(tmp_path: Path) -> None:
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([record("a", 2, 1)])
    with TraceWriter.open(tmp_path, {**META, "created": "later"}) as again:
        assert again.finished == {"a"}
        again.write([record("b", 2, 2)])
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert [name[:11] for name in names] == ["part-00001-", "part-00002-"]
    with pytest.raises(UsageError, match="lens: 'normed' there, 'raw' now"):
        TraceWriter.open(tmp_path, {**META, "lens": "raw"})


def test_orphan_steps_part_is_removed_on_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = TraceWriter.open(tmp_path, META)
    writer.write([record("a", 2, 1)])
    real_write = evolens.io.store.write_bytes

    def crash_on_samples(path: Path, data: bytes) -> Path:
        if path.parent.name == "samples":
            raise KeyboardInterrupt  # killed between the two renames
        return real_write(path, data)

    monkeypatch.setattr(evolens.io.store, "write_bytes", crash_on_samples)
    with pytest.raises(KeyboardInterrupt):
        writer.write([record("b", 2, 2)])
    monkeypatch.undo()
    writer.close()
    assert len(list((tmp_path / "steps").glob("part-*"))) == 2
    with TraceWriter.open(tmp_path, META) as reopened:
        assert reopened.finished == {"a"}
    assert pq.read_table(tmp_path / "steps").num_rows == 2  # the orphan "b" steps are gone


def test_disk_full_is_a_storage_error_and_finished_parts_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = TraceWriter.open(tmp_path, META)
    writer.write([record("a", 2, 1)])

    def no_space(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evolens.io.atomic.os, "fsync", no_space)
    with pytest.raises(StorageError, match="No space left on device"):
        writer.write([record("b", 2, 2)])
    monkeypatch.undo()
    writer.close()
    assert read_trace(tmp_path).samples["sample_id"].tolist() == ["a"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_unwritable_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create the trace directory"):
        TraceWriter.open(blocker / "trace", META)


def test_failures_are_listed_and_forgotten_on_retry(tmp_path: Path) -> None:
    with TraceWriter.open(tmp_path, META) as writer:
        writer.record_failure("x", "x.png", "x.png: not an image file")
        writer.record_failure("y", "y.png", "y.png: empty file")
        writer.forget_failures({"x"})
    assert read_failures(tmp_path) == [{"sample_id": "y", "image": "y.png", "error": "y.png: empty file"}]


def test_hidden_states_file(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    sample = record("a", 2, 1)
    sample.hidden = {
        "hidden": torch.randn(2, 3, 8).half(),
        "steps": torch.tensor([0, 1], dtype=torch.int32),
        "layers": torch.tensor([0, 2, 4], dtype=torch.int32),
    }
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([sample])
    stored = load_file(str(tmp_path / "hidden" / "a.safetensors"))
    assert stored["hidden"].dtype == np.float16 and stored["hidden"].shape == (2, 3, 8)
    np.testing.assert_array_equal(stored["layers"], [0, 2, 4])


def test_any_sample_id_gets_its_own_hidden_file_and_reads_back(tmp_path: Path) -> None:
    """Ids are kept verbatim; the hidden-state file name is made safe without ever colliding."""
    from evolens.io.store import file_stem, hidden_path
    from evolens.io.trace import load_trace

    ids = ["<script>alert(5)</script>", "<script>alert(6)</script>", "animals/cat", "../escape", "plain-1"]
    records = []
    for index, sample_id in enumerate(ids):
        sample = record(sample_id, 2, index)
        sample.hidden = {"hidden": torch.full((2, 3, 8), float(index)).half()}
        sample.group = "animals" if index % 2 else None
        records.append(sample)
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write(records)
    stems = [file_stem(sample_id) for sample_id in ids]
    assert len(set(stems)) == len(ids) and stems[-1] == "plain-1"
    assert all("/" not in stem and not stem.startswith(".") for stem in stems)
    assert sorted(p.name for p in (tmp_path / "hidden").iterdir()) == sorted(
        f"{s}.safetensors" for s in stems
    )
    trace = load_trace(tmp_path)
    groups = [group if isinstance(group, str) else None for group in trace.samples["group"]]
    assert trace.sample_ids == ids and groups == [None, "animals", None, "animals", None]
    for index, sample_id in enumerate(ids):
        assert hidden_path(tmp_path, sample_id).parent == tmp_path / "hidden"
        stored = trace.hidden(sample_id)
        assert stored is not None and float(stored.states[0, 0, 0]) == index


# --- one writer per trace folder -----------------------------------------------------------------------

HOLD_A_WRITER = """
import sys
from evolens.io.store import TraceWriter
from tests.test_store import META, record

with TraceWriter.open(sys.argv[1], META) as writer:
    writer.write([record("a", 2, 1)])
    print("holding", flush=True)
    sys.stdin.readline()
    writer.write([record("b", 3, 2)])
"""


def test_a_second_writer_in_this_process_is_refused_and_the_first_keeps_its_samples(tmp_path: Path) -> None:
    first = TraceWriter.open(tmp_path, META)
    first.write([record("a", 2, 1)])
    with pytest.raises(
        UsageError,
        match=rf"{re.escape(str(tmp_path))} is being written by another process \(pid {os.getpid()} on ",
    ):
        TraceWriter.open(tmp_path, META)
    first.write([record("b", 3, 2)])
    first.close()
    assert sorted(read_trace(tmp_path).samples["sample_id"]) == ["a", "b"]
    with TraceWriter.open(tmp_path, META) as again:  # the lock went with close()
        assert again.finished == {"a", "b"}


def test_a_second_writer_in_another_process_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_WRITER, str(tmp_path)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        with pytest.raises(UsageError) as refused:
            TraceWriter.open(tmp_path, META)
        message = str(refused.value)
        assert refused.value.exit_code == 2 and "\n" not in message
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert "-c" in message  # the holder's command line
        assert sorted(read_trace(tmp_path).samples["sample_id"]) == ["a"]  # nothing of it was removed
    finally:
        holder.communicate("go on\n", timeout=60)
    assert holder.returncode == 0
    assert sorted(read_trace(tmp_path).samples["sample_id"]) == ["a", "b"]
    with TraceWriter.open(tmp_path, META) as again:
        assert again.finished == {"a", "b"}


def test_the_lock_file_of_a_dead_process_blocks_nobody(tmp_path: Path) -> None:
    """The kernel drops a flock when its holder dies: the file a killed writer left is not a lock."""
    (tmp_path / ".lock").write_text(
        json.dumps({"pid": 2**22 + 1, "host": "gone", "command": "evolens trace"})
    )
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([record("a", 2, 1)])
    assert finished_sample_ids(tmp_path) == {"a"}


def test_a_writer_that_cannot_open_releases_the_lock(tmp_path: Path) -> None:
    TraceWriter.open(tmp_path, META).close()
    with pytest.raises(UsageError, match="other settings"):
        TraceWriter.open(tmp_path, {**META, "lens": "raw"})
    TraceWriter.open(tmp_path, META).close()  # not refused: the failed open let go of the lock


def test_part_names_never_repeat_and_sort_in_writing_order(tmp_path: Path) -> None:
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([record("a", 2, 1)])
        writer.write([record("b", 2, 2)])
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([record("c", 2, 3)])
    names = sorted(path.name for path in (tmp_path / "samples").iterdir())
    assert [name[:11] for name in names] == ["part-00001-", "part-00002-", "part-00003-"]
    assert all(re.fullmatch(r"part-\d{5}-[0-9a-f]{8}\.parquet", name) for name in names)
    assert len({name[11:] for name in names}) == 3  # a token of its own for every part
    assert list(read_trace(tmp_path).samples["sample_id"]) == ["a", "b", "c"]


# --- failures.jsonl -----------------------------------------------------------------------------------

TORN = b'{"sample_id": "z", "image": "z.png", "error": "z.png: cor' + "\u00e9".encode()[:1]


def test_a_torn_last_failure_line_is_dropped_with_a_note_and_nothing_valid_is_lost(tmp_path: Path) -> None:
    """A write cut short (disk full, kill) leaves half a line, ending mid-character; later runs go on."""
    with TraceWriter.open(tmp_path, META) as writer:
        writer.record_failure("x", "x.png", "x.png: not an image file")
        writer.record_failure("y", "y.png", "y.png: empty file")
    with open(tmp_path / "failures.jsonl", "ab") as handle:
        handle.write(TORN)
    with pytest.warns(UserWarning, match=r"failures.jsonl: line 3 .* dropped"):
        assert [f["sample_id"] for f in read_failures(tmp_path)] == ["x", "y"]
    with TraceWriter.open(tmp_path, META) as writer:
        writer.record_failure("w", "w.png", "w.png: empty file")  # not glued to the torn line
        with pytest.warns(UserWarning, match="line 3"):
            assert [f["sample_id"] for f in read_failures(tmp_path)] == ["x", "y", "w"]
        with pytest.warns(UserWarning, match="line 3"):
            writer.forget_failures({"x"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewrite left only whole lines
        assert [f["sample_id"] for f in read_failures(tmp_path)] == ["y", "w"]


def test_a_failure_is_appended_as_one_whole_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def one_write(descriptor: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(descriptor, data)

    with TraceWriter.open(tmp_path, META) as writer:
        monkeypatch.setattr(os, "write", one_write)
        writer.record_failure("x", "x.png", "x.png: not an image file")
        monkeypatch.undo()
    assert writes == [(tmp_path / "failures.jsonl").read_bytes()]
    assert writes[0].endswith(b"\n") and writes[0].count(b"\n") == 1


# --- corrupt parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["samples", "steps"])
def test_a_corrupt_part_is_an_input_error_naming_the_file_and_is_kept(tmp_path: Path, sub: str) -> None:
    with TraceWriter.open(tmp_path, META) as writer:
        writer.write([record("a", 2, 1)])
        writer.write([record("b", 2, 2)])
        broken = sorted((tmp_path / sub).glob("part-*.parquet"))[1]
        broken.write_bytes(b"PAR1")  # truncated to a few bytes
        readers = [lambda: read_trace(tmp_path), lambda: repair_parts(tmp_path)]
        if sub == "samples":
            readers += [lambda: finished_sample_ids(tmp_path), writer.finished_inputs]
        readers.append(lambda: writer.remove({"b"}))  # last: it rewrites the samples part before the steps
        for read in readers:
            with pytest.raises(InputError) as caught:
                read()
            message = str(caught.value)
            assert message.startswith(f"{broken}: not a readable Parquet file (") and "\n" not in message
            assert message.endswith("move it away or delete it to continue")
    with pytest.raises(InputError, match=re.escape(str(broken))):
        TraceWriter.open(tmp_path, META)
    assert broken.read_bytes() == b"PAR1"  # the user's file is left alone
    broken.unlink()
    with TraceWriter.open(tmp_path, META) as writer:  # the failed open released the lock
        assert writer.finished == {"a"}
