"""The fused C sweeps (``evolens.tracing.native``) give the eager sweeps' numbers, whatever the shapes,
thread count or CPU variant, and a machine that cannot build them falls back to the eager path."""

from __future__ import annotations

import ctypes
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from evolens.tracing import native, sweep
from evolens.tracing.engine import StepMetrics, StepMetricsEngine
from evolens.tracing.metrics import LN2_FLOAT32
from tests.test_metrics import GivenLogits, assert_same_sums, realistic_logits

needs_native = pytest.mark.skipif(
    native.native_sweeps() is None, reason="the native sweeps do not build here (no C compiler, AVX2 or MKL)"
)
FLOAT_FIELDS = ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "paper_js", "topk_probs")


def engine_metrics(logits: torch.Tensor, tokens: torch.Tensor, use_native: bool, raw: bool) -> StepMetrics:
    lens = GivenLogits(logits)
    if raw:  # the paper's "JS" comes for free with a lens named "raw"
        lens.name = "raw"
    engine = StepMetricsEngine(lens, paper_js=raw, native=use_native)
    assert engine.backend == ("native" if use_native else "eager")
    return engine.metrics64(torch.zeros(*logits.shape[:2], 1), tokens)


def assert_same(native_metrics: StepMetrics, eager: StepMetrics) -> None:
    for name in FLOAT_FIELDS:
        a, b = getattr(native_metrics, name), getattr(eager, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13, msg=name)
    assert torch.equal(native_metrics.rank, eager.rank)
    assert torch.equal(native_metrics.topk_ids, eager.topk_ids)


@needs_native
@pytest.mark.parametrize(
    ("rows", "layers", "vocab", "raw"),
    [(3, 9, 49_152, False), (2, 7, 1_000, True), (1, 2, 130, False), (5, 3, 453, True), (1, 31, 777, False)],
)
def test_native_sweeps_equal_the_eager_sweeps(rows: int, layers: int, vocab: int, raw: bool) -> None:
    logits = realistic_logits(rows, layers, vocab, seed=vocab)
    tokens = torch.randint(0, vocab, (rows,), generator=torch.Generator().manual_seed(1))
    tokens[0] = logits[0, -1].argmax()
    assert_same(engine_metrics(logits, tokens, True, raw), engine_metrics(logits, tokens, False, raw))


@needs_native
@pytest.mark.parametrize("threads", [1, 3])
def test_native_sweeps_do_not_depend_on_the_thread_count(threads: int) -> None:
    """Each thread sums its own range of the vocabulary; any split gives the same sums."""
    logits = realistic_logits(2, 6, 5_000, seed=3)
    tokens = torch.tensor([5, 17])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        split = engine_metrics(logits, tokens, True, True)
    finally:
        torch.set_num_threads(before)
    assert_same(split, engine_metrics(logits, tokens, False, True))


@needs_native
def test_extreme_logits_stay_finite() -> None:
    """Raw-lens logits in the thousands: probabilities below exp(-700) are floored, never 0 (no 0 log 0)."""
    logits = torch.zeros(1, 3, 300)
    logits[0, 0, 0], logits[0, 1, 1], logits[0, 2, 2] = 3000.0, 2000.0, -5000.0
    tokens = torch.tensor([2])
    fused = engine_metrics(logits, tokens, True, True)
    assert all(bool(torch.isfinite(getattr(fused, name)).all()) for name in FLOAT_FIELDS)
    assert_same(fused, engine_metrics(logits, tokens, False, True))
    assert fused.jsd_next[0, 0].item() == pytest.approx(LN2_FLOAT32, abs=1e-12)  # disjoint: ln 2, clamped


@needs_native
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_avx2_variant_builds_and_agrees(tmp_path: Path) -> None:
    """The AVX2 build (for CPUs without AVX-512) computes the same sums as the one in use."""
    library = native.NativeSweeps(ctypes.CDLL(str(native.build("AVX2", tmp_path))))
    logits = realistic_logits(2, 5, 3_000, seed=5)
    shift = logits.amax(-1, keepdim=True).double()
    in_use = native.native_sweeps()
    assert in_use is not None
    torch.testing.assert_close(
        library.sumexp(logits, shift), in_use.sumexp(logits, shift), rtol=1e-13, atol=0
    )
    lse = shift + torch.log(in_use.sumexp(logits, shift)).unsqueeze(-1)
    token_logit = logits[..., 11:12]
    assert_same_sums(
        library.sums(logits, lse, token_logit, True, True),
        in_use.sums(logits, lse, token_logit, True, True),
        atol=1e-13,
    )


def test_without_a_compiler_the_engine_runs_eagerly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("EVOLENS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError, match="no C compiler"):
        native.build("AVX2", tmp_path)
    native.native_sweeps.cache_clear()
    try:
        if native.cpu_capability() in native.FLAGS:
            with pytest.warns(UserWarning, match="running them eagerly"):
                assert native.native_sweeps() is None
        assert native.native_sweeps() is None
        engine = StepMetricsEngine(GivenLogits(realistic_logits(1, 3, 200, seed=0)))
        assert engine.backend == "eager"
    finally:
        native.native_sweeps.cache_clear()


def test_evolens_native_0_chooses_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    native.native_sweeps.cache_clear()
    try:
        assert native.native_sweeps() is None
        assert StepMetricsEngine(GivenLogits(torch.zeros(1, 2, 100))).backend == "eager"
    finally:
        native.native_sweeps.cache_clear()


def test_an_unwritable_cache_falls_back_to_the_temporary_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EVOLENS_CACHE", str(blocker / "cache"))
    folder = native.cache_folder()
    assert folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("evolens-native-")
    monkeypatch.setenv("EVOLENS_CACHE", str(tmp_path / "cache"))
    assert native.cache_folder() == tmp_path / "cache" / "native"


@needs_native
@pytest.mark.parametrize(("full", "paper"), [(True, True), (False, True), (True, False), (False, False)])
def test_native_sums_equal_the_compilable_functions(full: bool, paper: bool) -> None:
    """Every field of ``ChunkSums`` and every combination of the flags, against ``sweep.chunk_sums``."""
    logits = realistic_logits(3, 6, 1_000, seed=8)
    lse = torch.logsumexp(logits.double(), -1, keepdim=True)
    token_logit = logits[..., 7:8]
    fused = native.native_sweeps()
    assert fused is not None
    torch.testing.assert_close(fused.sumexp(logits, lse), sweep.chunk_sumexp(logits, lse), rtol=1e-13, atol=0)
    assert_same_sums(
        fused.sums(logits, lse, token_logit, full, paper),
        sweep.chunk_sums(logits, lse, token_logit, full, paper),
    )
