"""Helpers for the Ray engine tests: Ray's processes, torch threads, and comparing two traces."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from evolens.io.store import read_trace

PER_LAYER = ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "topk_probs")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie waiting for its parent counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (as a Ray actor with that many CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def step_matrix(steps, column: str) -> np.ndarray:
    """One steps column as float64: (rows, L+1), (rows, L) or (rows, L+1, k)."""
    return np.stack([np.stack(value) for value in steps[column]]).astype(np.float64)


def assert_same_trace(left: Path, right: Path, atol: float = 1e-5, image_paths: bool = True) -> None:
    """Same samples (ids, tokens, text, image files, or only their contents without ``image_paths``), each
    once; same per-step metrics within ``atol``."""
    a, b = read_trace(left), read_trace(right)
    assert not a.samples["sample_id"].duplicated().any() and not b.samples["sample_id"].duplicated().any()
    columns = ["sample_id", "image_sha256", "prompt", "text", "n_steps", "ground_truth"]
    columns += ["image"] if image_paths else []
    samples_a = a.samples.sort_values("sample_id").reset_index(drop=True)
    samples_b = b.samples.sort_values("sample_id").reset_index(drop=True)
    assert samples_a[columns].equals(samples_b[columns])
    assert [list(t) for t in samples_a["token_ids"]] == [list(t) for t in samples_b["token_ids"]]
    steps_a = a.steps.sort_values(["sample_id", "step"]).reset_index(drop=True)
    steps_b = b.steps.sort_values(["sample_id", "step"]).reset_index(drop=True)
    assert len(steps_a) == a.samples["n_steps"].sum() == len(steps_b)
    identity = ["sample_id", "step", "token_id", "token"]
    assert steps_a[identity].equals(steps_b[identity])
    for column in PER_LAYER:
        np.testing.assert_allclose(
            step_matrix(steps_a, column), step_matrix(steps_b, column), atol=atol, err_msg=column
        )
    np.testing.assert_array_equal(step_matrix(steps_a, "topk_ids"), step_matrix(steps_b, "topk_ids"))
    ranks_a, ranks_b = step_matrix(steps_a, "rank"), step_matrix(steps_b, "rank")
    np.testing.assert_array_equal(ranks_a[:, -1], ranks_b[:, -1])
    # near-equal logits deep in the vocabulary may swap by one under fp32 rounding with other thread counts
    np.testing.assert_allclose(ranks_a, ranks_b, rtol=1e-3, atol=1)
    meta_a, meta_b = ({k: v for k, v in t.meta.items() if k != "created"} for t in (a, b))
    assert meta_a == meta_b
