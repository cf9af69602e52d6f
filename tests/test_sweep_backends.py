"""The numba sweeps give the eager sweeps' numbers whatever the shapes or thread count; a backend that is
missing, broken or wrong is caught when it loads and the engine runs eagerly; nothing is loaded from a
cache folder that another user could write."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from evolens.io.private import UnsafeFolderError, cache_root, private_folder
from evolens.tracing import sweep, sweep_numba
from evolens.tracing.engine import StepMetrics, StepMetricsEngine
from evolens.tracing.metrics import LN2_FLOAT32
from tests.test_metrics import GivenLogits, assert_same_sums, realistic_logits

needs_numba = pytest.mark.skipif(sweep_numba.numba_sweeps() is None, reason="numba does not load here")
FLOAT_FIELDS = ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "paper_js", "topk_probs")
ROOT = Path(__file__).resolve().parents[1]


def engine_metrics(logits: torch.Tensor, tokens: torch.Tensor, use_numba: bool, raw: bool) -> StepMetrics:
    lens = GivenLogits(logits)
    if raw:  # the paper's "JS" comes for free with a lens named "raw"
        lens.name = "raw"
    engine = StepMetricsEngine(lens, paper_js=raw, native=use_numba)
    assert engine.backend == ("numba" if use_numba else "eager")
    return engine.metrics64(torch.zeros(*logits.shape[:2], 1), tokens)


def assert_same(fast: StepMetrics, eager: StepMetrics) -> None:
    for name in FLOAT_FIELDS:
        a, b = getattr(fast, name), getattr(eager, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13, msg=name)
    assert torch.equal(fast.rank, eager.rank)
    assert torch.equal(fast.topk_ids, eager.topk_ids)


@needs_numba
@pytest.mark.parametrize(
    ("rows", "layers", "vocab", "raw"),
    [(3, 9, 49_152, False), (2, 7, 1_000, True), (1, 2, 130, False), (5, 3, 453, True), (1, 31, 777, False)],
)
def test_numba_sweeps_equal_the_eager_sweeps(rows: int, layers: int, vocab: int, raw: bool) -> None:
    logits = realistic_logits(rows, layers, vocab, seed=vocab)
    tokens = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(1))
    tokens[0] = logits[0, -1].argmax()
    assert_same(engine_metrics(logits, tokens, True, raw), engine_metrics(logits, tokens, False, raw))


@needs_numba
@pytest.mark.parametrize("threads", [1, 3])
def test_numba_sweeps_do_not_depend_on_the_thread_count(threads: int) -> None:
    """Each range of the vocabulary is summed on its own; any split between threads gives the same sums."""
    logits = realistic_logits(2, 6, 5_000, seed=3)
    tokens = torch.tensor([5, 17])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        split = engine_metrics(logits, tokens, True, True)
    finally:
        torch.set_num_threads(before)
    assert_same(split, engine_metrics(logits, tokens, False, True))


@needs_numba
def test_extreme_logits_stay_finite() -> None:
    """Raw-lens logits in the thousands: probabilities below exp(-700) are floored, never 0 (no 0 log 0)."""
    logits = torch.zeros(1, 3, 300)
    logits[0, 0, 0], logits[0, 1, 1], logits[0, 2, 2] = 3000.0, 2000.0, -5000.0
    tokens = torch.tensor([2])
    fast = engine_metrics(logits, tokens, True, True)
    assert all(bool(torch.isfinite(getattr(fast, name)).all()) for name in FLOAT_FIELDS)
    assert_same(fast, engine_metrics(logits, tokens, False, True))
    assert fast.jsd_next[0, 0].item() == pytest.approx(LN2_FLOAT32, abs=1e-12)  # disjoint: ln 2, clamped


@needs_numba
@pytest.mark.parametrize(("full", "paper"), [(True, True), (False, True), (True, False), (False, False)])
def test_numba_sums_equal_the_definitions(full: bool, paper: bool) -> None:
    """Every field of ``ChunkSums``, every combination of the flags, against ``sweep.chunk_sums``; the
    log-sum-exp and block maxima against their definitions."""
    logits = realistic_logits(3, 6, 1_000, seed=8)
    token_logit = logits[..., 7:8]
    fast = sweep_numba.numba_sweeps()
    assert fast is not None
    block_max, lse = fast.normalizers(logits)
    assert torch.equal(block_max, sweep.block_maxima(logits))
    torch.testing.assert_close(lse, torch.logsumexp(logits.double(), -1, keepdim=True), rtol=1e-14, atol=0)
    assert_same_sums(
        fast.sums(logits, lse, token_logit, full, paper),
        sweep.chunk_sums(logits, lse, token_logit, full, paper),
    )


@needs_numba
def test_exp_and_log_kernels_are_accurate_over_their_ranges() -> None:
    """The inlined exp and log the sweeps use, within a few ulp of numpy's over the ranges they meet."""
    from evolens.tracing import sweep_kernels

    exp, log = sweep_kernels._exp.py_func, sweep_kernels._log.py_func
    for x in np.concatenate([np.linspace(-700.0, 0.0, 2001), np.linspace(-0.4, 0.4, 101), [1.0, 5.0]]):
        assert exp(x) == pytest.approx(np.exp(x), rel=5e-16)
    for s in np.concatenate([np.geomspace(1e-304, 2.0, 3001), [1.0, np.sqrt(2.0), 0.5]]):
        assert log(s) == pytest.approx(np.log(s), rel=5e-16, abs=1e-300)


@needs_numba
def test_non_contiguous_logits_are_refused_not_read_out_of_bounds() -> None:
    fast = sweep_numba.numba_sweeps()
    assert fast is not None
    logits = realistic_logits(2, 3, 400, seed=2).transpose(0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        fast.normalizers(logits)


def test_a_stub_kernel_is_caught_by_the_self_test_and_the_engine_runs_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel module with the right functions that computes nothing (a planted or broken build) fails
    the one-block check when it loads; the engine warns and uses the eager sweeps."""
    stub = types.ModuleType("evolens.tracing.sweep_kernels")
    stub.first_pass = lambda z, v0, v1, block_max, shift, sumexp: (shift.fill(0.0), sumexp.fill(1.0))
    stub.sums_pass = lambda *args: None
    assert sweep_numba.self_test(sweep_numba.NumbaSweeps(stub)) is not None
    monkeypatch.setitem(sys.modules, "evolens.tracing.sweep_kernels", stub)
    sweep_numba.numba_sweeps.cache_clear()
    try:
        with pytest.warns(UserWarning, match="running them eagerly"):
            assert sweep_numba.numba_sweeps() is None
        assert StepMetricsEngine(GivenLogits(realistic_logits(1, 3, 200, seed=0))).backend == "eager"
    finally:
        sweep_numba.numba_sweeps.cache_clear()


def test_without_numba_the_engine_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evolens.tracing.sweep_kernels", None)  # import fails
    sweep_numba.numba_sweeps.cache_clear()
    try:
        with pytest.warns(UserWarning, match="running them eagerly"):
            assert sweep_numba.numba_sweeps() is None
        assert StepMetricsEngine(GivenLogits(torch.zeros(1, 2, 100))).backend == "eager"
    finally:
        sweep_numba.numba_sweeps.cache_clear()


def test_evolens_native_0_chooses_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLENS_NATIVE", "0")
    assert StepMetricsEngine(GivenLogits(torch.zeros(1, 2, 100))).backend == "eager"


def test_a_private_folder_is_made_private_and_a_tampered_one_emptied(tmp_path: Path) -> None:
    folder = private_folder(tmp_path / "cache" / "numba")
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    planted = folder / "sub" / "kernel.nbi"
    planted.parent.mkdir()
    planted.write_text("ours")
    assert private_folder(folder) == folder and planted.exists()  # ours and private: kept
    folder.chmod(0o777)  # world-writable for a while: anything inside may have been planted
    private_folder(folder)
    assert not planted.exists() and (folder.stat().st_mode & 0o777) == 0o700
    planted.parent.mkdir()
    planted.write_text("writable by others")
    planted.chmod(0o666)
    private_folder(folder)
    assert list(folder.iterdir()) == []


def test_a_folder_below_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: another user could rename our folder and put theirs in its place
    with pytest.raises(UnsafeFolderError, match="can be written by other users"):
        private_folder(shared / "numba")
    shared.chmod(0o1777)  # sticky, as /tmp: what is ours inside stays ours
    assert private_folder(shared / "numba").is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder of another user needs root")
def test_a_cache_folder_of_another_user_is_refused_and_nothing_is_loaded_from_it(tmp_path: Path) -> None:
    """The planted-library case: another user's cache folder holding files numba would load. The kernels
    are compiled for this run only (a warning), the planted files are neither used nor touched, and the
    metrics are still right (the self-test passed)."""
    cache = tmp_path / "cache"
    folder = cache / "numba"
    planted = folder / "tracing_0" / "sweep_kernels.first_pass-1.py311.nbi"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted")
    for path in (folder, planted.parent, planted):
        os.chown(path, 65534, 65534)
    with pytest.raises(UnsafeFolderError, match="belongs to user 65534"):
        private_folder(folder)
    code = (
        "from evolens.tracing.sweep_numba import numba_sweeps\n"
        "import numba\n"
        "print(numba_sweeps() is not None, repr(numba.config.CACHE_DIR))\n"
    )
    environment = {**os.environ, "EVOLENS_CACHE": str(cache)}
    environment.pop("NUMBA_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "compiled for this run only" in result.stderr
    assert result.stdout.split() == ["True", "''"]  # the kernels work; numba caches nowhere
    assert planted.read_bytes() == b"planted" and sorted(p.name for p in folder.rglob("*")) == [
        "sweep_kernels.first_pass-1.py311.nbi",
        "tracing_0",
    ]


def test_without_a_home_the_cache_is_this_users_folder_in_the_temporary_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("EVOLENS_CACHE", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    assert cache_root().name == f"evolens-{os.getuid()}"
