"""The trace dataset on disk, without a model: round trip, plain pyarrow, resume bookkeeping, errors."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import evolens.io.atomic
from evolens.errors import StorageError, UsageError
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
    writer = TraceWriter.open(tmp_path, META)
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
    TraceWriter.open(tmp_path, META).write([record("a", 2, 1)])
    again = TraceWriter.open(tmp_path, {**META, "created": "later"})
    assert again.finished == {"a"}
    again.write([record("b", 2, 2)])
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "part-00001.parquet",
        "part-00002.parquet",
    ]
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
    assert len(list((tmp_path / "steps").glob("part-*"))) == 2
    reopened = TraceWriter.open(tmp_path, META)
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
    assert read_trace(tmp_path).samples["sample_id"].tolist() == ["a"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_unwritable_directory_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create the trace directory"):
        TraceWriter.open(blocker / "trace", META)


def test_failures_are_listed_and_forgotten_on_retry(tmp_path: Path) -> None:
    writer = TraceWriter.open(tmp_path, META)
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
    TraceWriter.open(tmp_path, META).write([sample])
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
    TraceWriter.open(tmp_path, META).write(records)
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
