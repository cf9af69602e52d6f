"""The CPU sweep backend: the numba kernels of ``sweep_kernels``, one vocabulary range per thread.

The eager sweeps spend most of a step on memory passes (~20 PyTorch operations per chunk, each reading and
writing float64 buffers). The kernels compute the same float64 sums reading each logit twice, on tiles
that stay in L2, with exp and log inlined and vectorized (``benchmarks/sweep_settings.py`` compares them
with the eager sweeps, and ``tests/test_sweep_backends.py`` checks that both give the same numbers).

numba compiles them with its bundled LLVM (no C compiler, no library symbol outside numba and numpy);
the compiled code is cached in a private folder of the user (``kernel_cache``). The first time a process
loads them, ``numba_sweeps`` checks them on one block against the eager sums; if numba is missing, fails,
or disagrees, it warns once and the engine runs the eager sweeps. The vocabulary is split into
``torch.get_num_threads()`` ranges (multiples of ``BLOCK`` wide); the calling thread runs the first, a
pool of threads the others (the kernels release the GIL).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import warnings
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
import torch

from evolens.tracing.sweep import ACCUMULATE, BLOCK, ChunkSums, block_maxima, chunk_sumexp, chunk_sums

RANGES_PER_THREAD = 8
"""Vocabulary ranges per thread and pass: threads take them one by one, so that one thread slowed down (by
another thread pool still spinning on its core, say) holds the others up by one range at most."""
MIN_RANGE = 1024
"""The narrowest vocabulary range (narrower ones cost more in calls than they gain in balance)."""
SELF_TEST_TOLERANCE = 1e-9
"""Largest relative difference from the eager sums that the one-block check accepts (measured: ~1e-15)."""


class NumbaSweeps:
    """``SweepBackend`` on the CPU with the numba kernels (``kernels``: the ``sweep_kernels`` module)."""

    name = "numba"
    scratch_bytes = 0
    reserved_bytes = 0  # a few n x TILE float64 tiles per thread

    def __init__(self, kernels: ModuleType) -> None:
        self.kernels = kernels
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 0

    def release(self) -> None:
        """Nothing to free: the kernels allocate their tile buffers per call."""

    def normalizers(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block maxima (G, n, ceil(V / BLOCK)) fp32 and log-sum-exp (G, n, 1) float64 of (G, n, V) logits."""
        z = _numpy(logits)
        rows, layers, vocab = z.shape
        bounds = _bounds(vocab)
        block_max = np.empty((rows, layers, -(-vocab // BLOCK)), np.float32)
        shift = np.empty((len(bounds), rows, layers))
        sumexp = np.empty((len(bounds), rows, layers))
        self._run(
            [
                (self.kernels.first_pass, (z, v0, v1, block_max, shift[part], sumexp[part]))
                for part, (v0, v1) in enumerate(bounds)
            ]
        )
        shifts, sums = torch.from_numpy(shift), torch.from_numpy(sumexp)
        top = shifts.amax(0)
        lse = top + torch.log((sums * torch.exp(shifts - top)).sum(0))
        return torch.from_numpy(block_max), lse.unsqueeze(-1)

    def sums(
        self,
        logits: torch.Tensor,
        lse: torch.Tensor,
        token_logit: torch.Tensor,
        full: bool = True,
        paper: bool = False,
    ) -> ChunkSums:
        """``sweep.chunk_sums`` over the whole vocabulary (same arguments; logits (G, n, V) fp32)."""
        z = _numpy(logits)
        rows, layers, vocab = z.shape
        bounds = _bounds(vocab)
        lse_rows = np.ascontiguousarray(lse.reshape(rows, layers).to(ACCUMULATE).numpy())
        token_rows = np.ascontiguousarray(token_logit.reshape(rows, layers).float().numpy())
        out = np.zeros((len(bounds), 7, rows, layers))
        self._run(
            [
                (self.kernels.sums_pass, (z, v0, v1, lse_rows, token_rows, full, paper, out[part]))
                for part, (v0, v1) in enumerate(bounds)
            ]
        )
        total = torch.from_numpy(out.sum(0))
        pairs = layers - 1
        return ChunkSums(
            p_logp=total[0],
            next_slogs=total[1, :, :pairs],
            last_slogs=total[2, :, : max(layers - 2, 0)] if full else None,
            last_cross=total[3] if full else None,
            next_cross=total[4, :, :pairs] if paper else None,
            prev_cross=total[5, :, :pairs] if paper else None,
            above=total[6] if full else None,
        )

    def _run(self, calls: list[tuple[Any, tuple[Any, ...]]]) -> None:
        """Run the kernel calls on this thread and ``torch.get_num_threads() - 1`` pool threads, each taking
        the next call not yet taken (a thread slowed down by another process's work takes fewer)."""
        helpers = min(torch.get_num_threads(), len(calls)) - 1
        taken = itertools.count()

        def work() -> None:
            for index in iter(taken.__next__, None):
                if index >= len(calls):
                    return
                kernel, args = calls[index]
                kernel(*args)

        if helpers > 0 and (self._pool is None or self._workers < helpers):
            self._workers = helpers
            self._pool = ThreadPoolExecutor(helpers, thread_name_prefix="evolens-sweep")
        futures = [self._pool.submit(work) for _ in range(helpers)] if self._pool and helpers else []
        work()
        for future in futures:
            future.result()


def _numpy(logits: torch.Tensor) -> np.ndarray:
    """The logits as a C-contiguous fp32 numpy array sharing their memory (the caller keeps them alive)."""
    if logits.device.type != "cpu" or logits.dtype != torch.float32 or not logits.is_contiguous():
        raise ValueError("the numba sweeps take contiguous fp32 logits on the CPU")
    return logits.numpy()


def _bounds(vocab: int) -> list[tuple[int, int]]:
    """The vocabulary split into ``RANGES_PER_THREAD`` ranges per thread, each a multiple of ``BLOCK`` wide
    (the last may be shorter) and at least ``MIN_RANGE`` wide."""
    parts = max(1, min(torch.get_num_threads() * RANGES_PER_THREAD, vocab // MIN_RANGE))
    step = -(-vocab // parts)
    step = -(-step // BLOCK) * BLOCK
    return [(start, min(start + step, vocab)) for start in range(0, vocab, step)]


@functools.cache
def numba_sweeps() -> NumbaSweeps | None:
    """The numba sweeps, loaded (or compiled) and checked once per process; None (with a warning) where
    numba is missing or fails, or where the kernels disagree with the eager sums on one block."""
    try:
        sweeps = NumbaSweeps(importlib.import_module("evolens.tracing.sweep_kernels"))
        problem = self_test(sweeps)
    except Exception as exc:  # numba missing, an LLVM or cache failure: the eager sweeps give the numbers
        problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if problem is None:
        return sweeps
    warnings.warn(f"numba metric sweeps unavailable ({problem}); running them eagerly", stacklevel=2)
    return None


def self_test(sweeps: NumbaSweeps) -> str | None:
    """Compare ``sweeps`` with the eager definitions on one block; None if they agree, else what differs.

    The block mixes ordinary logits, raw-lens-sized ones (in the thousands: probabilities far below the
    exp floor) and a vocabulary that is not a multiple of the tile or block width.
    """
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 1000, generator=generator) * torch.tensor([1.0, 8.0, 2000.0]).view(3, 1, 1)
    token_logit = logits[:, :, 17:18].contiguous()
    block_max, lse = sweeps.normalizers(logits)
    shift = block_maxima(logits).amax(-1, keepdim=True).to(ACCUMULATE)
    expected_lse = shift + torch.log(chunk_sumexp(logits, shift)).unsqueeze(-1)
    if not torch.equal(block_max, block_maxima(logits)):
        return "block maxima differ"
    got = sweeps.sums(logits, expected_lse, token_logit, full=True, paper=True)
    expected = chunk_sums(logits, expected_lse, token_logit, full=True, paper=True)
    pairs = [("lse", lse, expected_lse)] + [
        (name, getattr(got, name), getattr(expected, name)) for name in ChunkSums._fields
    ]
    for name, value, reference in pairs:
        scale = reference.abs().max().clamp_min(1.0)
        if not (value - reference).abs().max() <= SELF_TEST_TOLERANCE * scale:
            return f"{name} differs from the eager sums"
    return None
