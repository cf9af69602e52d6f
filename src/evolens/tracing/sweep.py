"""The fused vocabulary sweep: every vocabulary sum one step needs, from one pass over each chunk of logits.

The lens writes the fp32 logits z of G rows and n = L+1 lens layers once, (G, n, V). Two sweeps over
vocabulary chunks then give every metric; a chunk (G, n, C) holds all lens layers of its rows, so the
consecutive-layer and to-the-last-layer mixtures are formed while the chunk is in cache:

1. ``chunk_sumexp``: sum_v exp(z_v - m), m the row-layer maximum; over all chunks this gives the
   log-sum-exp lse = m + log(sum), i.e. log p = z - lse.
2. ``chunk_sums``: with log p = z - lse and p = exp(log p), the chunk's share of sum p log p, of sum s log s
   for the mixtures s = p_l + p_{l+1} and s = p_l + p_L, of sum p_L log p_l (for KL), of the paper's cross
   sums, and the count of logits above the emitted token's (its rank).

Before them, ``block_maxima`` finds the maximum of every block of ``BLOCK`` entries in one fp32 pass: the
top-k candidates, and (their maximum) each row-layer's largest logit m, the shift of the first sweep.

Everything after the fp32 logits is float64: log p, p, the mixtures and their logs, every sum. The
metrics are therefore those of a float64 computation on the same logits, up to float64 rounding (measured
~1e-13 nats; ``tests/test_metrics.py`` checks 1e-7), and a probability vector sums to 1 within ~1e-15.

The two functions are plain tensor code for ``torch.compile`` (one fused kernel per call); ``EagerSweep``
computes the same sums eagerly with reused buffers and in-place operations (plain eager code would spend
as long allocating and converting temporaries as computing). ``tests/test_metrics.py`` checks that both
agree with each other and with the direct definitions of ``evolens.tracing.metrics``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch

ACCUMULATE = torch.float64
"""The dtype of every computation after the logits."""

EXP_FLOOR = -700.0
"""p = exp(max(log p, EXP_FLOOR)): no probability is 0 in float64 (exp(-745) would be), so every mixture s
is > 0 and s log s is finite; each changed probability is below 1e-304 (log p itself is never clamped)."""

SWEEP_BYTES_PER_ENTRY = 4 * 8 + 4
"""Memory of ``EagerSweep``'s buffers per chunk entry: four float64 (log p, p, the mixtures, a product)
and one fp32 (the rank's comparison)."""

BLOCK = 64
"""Vocabulary block of the top-k search: the k largest logits lie in the k blocks with the largest maxima."""


class ChunkSums(NamedTuple):
    """One chunk's share of the vocabulary sums of one step, float64 (G rows, n = L+1 lens layers).

    Attributes:
        p_logp: sum p_l log p_l, (G, n) (= -entropy).
        next_slogs: sum s log s for s = p_l + p_{l+1}, (G, n-1).
        last_slogs: sum s log s for s = p_l + p_{n-1}, l < n-2, (G, n-2) (l = n-2 is ``next_slogs[:, -1]``).
        last_cross: sum p_{n-1} log p_l, (G, n).
        next_cross: sum p_{l+1} log p_l, (G, n-1) (the paper's "JS"); None unless asked.
        prev_cross: sum p_l log p_{l+1}, (G, n-1) (the paper's "JS"); None unless asked.
        above: how many logits exceed the emitted token's, (G, n) (float64, exact below 2^53).
    """

    p_logp: torch.Tensor
    next_slogs: torch.Tensor
    last_slogs: torch.Tensor | None
    last_cross: torch.Tensor | None
    next_cross: torch.Tensor | None
    prev_cross: torch.Tensor | None
    above: torch.Tensor | None


def chunk_sumexp(logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """sum_v exp(z_v - shift) in float64: logits (G, n, C) fp32, shift (G, n, 1) float64 -> (G, n)."""
    return torch.exp(logits.to(ACCUMULATE) - shift).sum(-1)


def chunk_sums(
    logits: torch.Tensor,
    lse: torch.Tensor,
    token_logit: torch.Tensor,
    full: bool = True,
    paper: bool = False,
) -> ChunkSums:
    """The chunk's share of every vocabulary sum (see ``ChunkSums``).

    Args:
        logits: (G, n, C) fp32, all n lens layers of G rows over C vocabulary entries.
        lse: (G, n, 1) float64, the log-sum-exp of each row-layer over the whole vocabulary.
        token_logit: (G, n, 1) fp32, the emitted token's logit in each row-layer.
        full: also the to-last-layer sums and the rank count (False: only what the paper's "JS" needs,
            for a second lens).
        paper: also the paper's cross sums.
    """
    logp = logits.to(ACCUMULATE) - lse
    p = logp.clamp_min(EXP_FLOOR).exp()
    p_logp = _dot(p, logp)
    next_slogs = _slogs(p[:, :-1] + p[:, 1:])
    next_cross = prev_cross = last_slogs = last_cross = above = None
    if paper:
        next_cross = _dot(p[:, 1:], logp[:, :-1])
        prev_cross = _dot(p[:, :-1], logp[:, 1:])
    if full:
        last = p[:, -1:]
        last_slogs = _slogs(p[:, :-2] + last)
        last_cross = _dot(logp, last)
        above = (logits > token_logit).to(ACCUMULATE).sum(-1)
    return ChunkSums(p_logp, next_slogs, last_slogs, last_cross, next_cross, prev_cross, above)


def _dot(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """sum_v first * second (broadcast): (G, m, C) -> (G, m)."""
    return (first * second).sum(-1)


def _slogs(mixture: torch.Tensor) -> torch.Tensor:
    """sum_v s log s of mixtures s > 0: (G, m, C) -> (G, m)."""
    return (mixture * mixture.log()).sum(-1)


def block_maxima(logits: torch.Tensor) -> torch.Tensor:
    """Maximum of each block of ``BLOCK`` entries (the last block may be shorter): (G, n, C) -> (G, n, B)."""
    width = logits.shape[-1]
    whole = width - width % BLOCK
    maxima = logits[..., :whole].unflatten(-1, (whole // BLOCK, BLOCK)).amax(-1)
    if whole == width:
        return maxima
    return torch.cat([maxima, logits[..., whole:].amax(-1, keepdim=True)], dim=-1)


class EagerSweep:
    """``chunk_sumexp`` and ``chunk_sums`` for eager execution, through float64 buffers reused across calls.

    Every chunk-sized result is written into a buffer kept from call to call: a fresh temporary of a few
    MiB per operation would be fresh memory from the operating system each time (page faults).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}

    @property
    def scratch_bytes(self) -> int:
        """Memory held by the buffers now."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def release(self) -> None:
        """Free the buffers."""
        self._buffers.clear()

    def sumexp(self, logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``chunk_sumexp``: (G, n, C) fp32, (G, n, 1) float64 -> (G, n)."""
        values = self._buffer("logp", logits.shape).copy_(logits).sub_(shift)
        return values.exp_().sum(-1)

    def sums(
        self,
        logits: torch.Tensor,
        lse: torch.Tensor,
        token_logit: torch.Tensor,
        full: bool = True,
        paper: bool = False,
    ) -> ChunkSums:
        """``chunk_sums`` (same arguments and results), with no temporary the size of the chunk."""
        rows, layers, width = logits.shape
        logp = self._buffer("logp", logits.shape).copy_(logits).sub_(lse)
        p = torch.clamp(logp, min=EXP_FLOOR, out=self._buffer("p", logits.shape)).exp_()
        p_logp = self._dot(p, logp)
        mixtures = self._buffer("mixture", (rows, layers - 1, width))
        next_slogs = self._slogs(torch.add(p[:, :-1], p[:, 1:], out=mixtures))
        next_cross = prev_cross = last_slogs = last_cross = above = None
        if paper:
            next_cross = self._dot(p[:, 1:], logp[:, :-1])
            prev_cross = self._dot(p[:, :-1], logp[:, 1:])
        if full:
            last = p[:, -1:]
            last_slogs = self._slogs(torch.add(p[:, :-2], last, out=mixtures[:, 1:]))
            last_cross = self._dot(logp, last)
            flags = torch.gt(logits, token_logit, out=self._buffer("flags", logits.shape, torch.float32))
            above = flags.sum(-1, dtype=ACCUMULATE)
        return ChunkSums(p_logp, next_slogs, last_slogs, last_cross, next_cross, prev_cross, above)

    def _dot(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """sum_v first * second (broadcast), through the "product" buffer: (G, m, C) -> (G, m)."""
        shape = torch.broadcast_shapes(first.shape, second.shape)
        return torch.mul(first, second, out=self._buffer("product", shape)).sum(-1)

    def _slogs(self, mixture: torch.Tensor) -> torch.Tensor:
        """sum_v s log s of mixtures s > 0, through the "product" buffer: (G, m, C) -> (G, m)."""
        logs = torch.log(mixture, out=self._buffer("product", mixture.shape))
        return logs.mul_(mixture).sum(-1)

    def _buffer(
        self, name: str, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = ACCUMULATE
    ) -> torch.Tensor:
        """A reusable scratch tensor of ``shape`` (grown when too small, never shrunk)."""
        size = 1
        for n in shape:
            size *= n
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        return buffer[:size].view(shape)


class SweepBackend(Protocol):
    """How the two sweeps run over a whole (G, n, V) logits block; the engine chooses one when it is made
    (``evolens.tracing.sweep_choice``).

    Attributes:
        name: "numba", "compiled" or "eager" (recorded in benchmark output).
        reserved_bytes: the most memory the backend's temporaries take in one call (the engine's memory
            budget keeps it free beside the logits).
        scratch_bytes: memory held by the backend's buffers now.
    """

    @property
    def name(self) -> str: ...

    @property
    def reserved_bytes(self) -> int: ...

    @property
    def scratch_bytes(self) -> int: ...

    def release(self) -> None:
        """Free the buffers kept between calls."""

    def normalizers(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, n, V) fp32 logits -> block maxima (G, n, ceil(V / BLOCK)) fp32 and log-sum-exp (G, n, 1)
        float64 (shifted by each row-layer's largest logit, so that no exp overflows)."""
        ...

    def sums(
        self, logits: torch.Tensor, lse: torch.Tensor, token_logit: torch.Tensor, full: bool, paper: bool
    ) -> ChunkSums:
        """``chunk_sums`` over the whole vocabulary."""
        ...


class ChunkedSweeps:
    """``SweepBackend`` by vocabulary chunks: ``EagerSweep`` (eager=True) or ``chunk_sumexp`` and
    ``chunk_sums`` compiled by ``torch.compile`` (one fused kernel per chunk; a compilation failure falls
    back to the eager sweep for good, with a warning).

    Args:
        device: where the logits are.
        compiled: compile the sweeps.
        chunk_entries: entries (rows x layers x vocabulary) per chunk at most.
    """

    def __init__(self, device: torch.device, compiled: bool, chunk_entries: int) -> None:
        self.compiled = compiled
        self.chunk_entries = chunk_entries
        self.eager = EagerSweep(device)
        # dynamic shapes: the row count changes as rows finish, one kernel serves all of them
        self._sumexp: Callable[..., torch.Tensor] = (
            torch.compile(chunk_sumexp, dynamic=True) if compiled else chunk_sumexp
        )
        self._sums: Callable[..., ChunkSums] = (
            torch.compile(chunk_sums, dynamic=True) if compiled else chunk_sums
        )

    @property
    def name(self) -> str:
        return "compiled" if self.compiled else "eager"

    @property
    def reserved_bytes(self) -> int:
        return self.chunk_entries * SWEEP_BYTES_PER_ENTRY

    @property
    def scratch_bytes(self) -> int:
        return self.eager.scratch_bytes

    def release(self) -> None:
        self.eager.release()

    def normalizers(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chunks = self._chunks(logits)
        block_max = torch.cat([block_maxima(chunk) for chunk in chunks], dim=-1)
        shift = block_max.amax(-1, keepdim=True).to(ACCUMULATE)
        total = sum(self._call(self._sumexp, self.eager.sumexp, chunk, shift) for chunk in chunks)
        return block_max, shift + torch.log(total).unsqueeze(-1)

    def sums(
        self, logits: torch.Tensor, lse: torch.Tensor, token_logit: torch.Tensor, full: bool, paper: bool
    ) -> ChunkSums:
        parts = [
            self._call(self._sums, self.eager.sums, chunk, lse, token_logit, full, paper)
            for chunk in self._chunks(logits)
        ]
        return parts[0] if len(parts) == 1 else add_sums(parts)

    def _chunks(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Vocabulary chunks of about ``chunk_entries`` entries, multiples of ``BLOCK`` wide."""
        rows, layers, vocab = logits.shape
        width = min(vocab, max(BLOCK, self.chunk_entries // (rows * layers) // BLOCK * BLOCK))
        return [logits[..., start : start + width] for start in range(0, vocab, width)]

    def _call(self, compiled: Callable[..., Any], eager: Callable[..., Any], *args: Any) -> Any:
        if not self.compiled:
            return eager(*args)
        try:
            return compiled(*args)
        except Exception as exc:  # any compiler failure: the eager code computes the same numbers
            warnings.warn(f"torch.compile failed ({type(exc).__name__}); metrics run eagerly", stacklevel=3)
            self.compiled = False
            return eager(*args)


def add_sums(parts: list[ChunkSums]) -> ChunkSums:
    """The chunks' sums added up."""
    joined: dict[str, Any] = {}
    for name in ChunkSums._fields:
        values = [getattr(part, name) for part in parts]
        joined[name] = None if values[0] is None else torch.stack(values).sum(0)
    return ChunkSums(**joined)
