"""The hot path: every lens layer's next-token distribution of one generation step, reduced to metrics.

For G rows (samples) and lens layers 0..L, the lens writes the (G, L+1, V) fp32 logits once into a buffer
reused from step to step; ``evolens.tracing.sweep`` then reads them in two sweeps over vocabulary chunks
(all lens layers of a row in each chunk) and returns float64 vocabulary sums, from which the metrics are
finished here (``metrics.*_from_sums``). No (G, L+1, V) log-probabilities or probabilities are ever
stored, and no Python loop runs over layers.

The sweeps run in one of three backends (``sweep.SweepBackend``), chosen once when the engine is made
(``choose_sweeps``): on the CPU the numba kernels (``evolens.tracing.sweep_numba``; a whole step costs
1.3x the lens matmul on the demo where the eager sweeps take 2.0x, ``benchmarks/sweep_settings.py``), on
CUDA the sweeps compiled by ``torch.compile`` (one fused kernel per chunk), and the eager PyTorch sweeps,
which are the reference and the fallback wherever the others are missing or fail (with a warning).
``EVOLENS_NATIVE=0`` keeps the CPU on the eager sweeps; ``EVOLENS_COMPILE=1`` compiles them on any device.
Nothing in the engine waits for the device (no host sync); the caller decides when to copy the metrics
to the host.

Rows are processed in groups, and vocabularies in chunks, so that the logits buffer and the sweep's
temporaries together stay under ``max_bytes`` whatever the vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any

import torch

from evolens.lenses.logit import Lens, LogitLens
from evolens.tracing.metrics import LN2_FLOAT32, jsd_from_sums, kl_from_sums, paper_js_from_sums
from evolens.tracing.sweep import (
    BLOCK,
    SWEEP_BYTES_PER_ENTRY,
    ChunkedSweeps,
    ChunkSums,
    SweepBackend,
)

CHUNK_ENTRIES = {"cpu": 2**17}
"""Entries (rows x layers x vocabulary) per eager sweep chunk by device type; on the CPU 1 MiB of float64
per scratch buffer (``benchmarks/sweep_settings.py``: from 2^16 to 2^20 entries the speed differs by less
than 10%, 2^15 is much slower; 2^17 keeps the buffers small); on other devices ``DEVICE_CHUNK_ENTRIES``."""
DEVICE_CHUNK_ENTRIES = 2**24
"""Entries per chunk on accelerators: big enough for few kernel launches, small enough that the eager
path's temporaries take 576 MiB at most (``SWEEP_BYTES_PER_ENTRY``)."""

MAX_BYTES = {"cpu": 64 * 2**20}
"""Default memory budget of the logits buffer and the sweep's buffers by device type. On the CPU 64 MiB holds
a batch of 8 rows of the demo (31 x 49,152 fp32 logits each) in one group: the lens matmul of 124 states
costs 1.18x per state what 248 states cost (``benchmarks/sweep_settings.py``), and with a 32 MiB budget the
demo's trace took 1.27x the floor instead of 1.02x (``benchmarks/trace_overhead.py``)."""
DEVICE_MAX_BYTES = 512 * 2**20
"""Default memory budget on accelerators (one group for a whole batch of a 7B model)."""
MIN_GROUP_STATES = 128
"""With the default budget, a row group holds at least this many states (rows x lens layers): the lens
matmul reads the whole (V, d) unembedding once per group, and with fewer states that read dominates
(``benchmarks/sweep_settings.py``, demo shape, 2 threads: 31 states per matmul take 1.75x the time per
state of 124)."""

COMPILE_ENV = "EVOLENS_COMPILE"
"""Set to 1 or 0 to compile the sweeps or not, whatever the device (default: compile on CUDA only)."""
NATIVE_ENV = "EVOLENS_NATIVE"
"""Set to 0 to run the eager sweeps on the CPU instead of the numba kernels."""


@dataclass
class StepMetrics:
    """Per-layer metrics of one step for G rows. Shapes: (G, L+1) unless noted; fp32 unless noted (float64
    from ``StepMetricsEngine.metrics64``).

    Attributes:
        prob: p_l(emitted token).
        rank: rank of the emitted token under p_l, int32 (0 = top-1).
        entropy: H(p_l) in nats.
        jsd_next: JSD(p_l, p_{l+1}), (G, L).
        jsd_last: JSD(p_l, p_L).
        kl_last: KL(p_L || p_l).
        paper_js: the paper's "JS" between raw-lens layers l and l+1, (G, L); None when not computed.
        topk_ids: (G, L+1, k) int32, most likely first.
        topk_probs: (G, L+1, k).
    """

    prob: torch.Tensor
    rank: torch.Tensor
    entropy: torch.Tensor
    jsd_next: torch.Tensor
    jsd_last: torch.Tensor
    kl_last: torch.Tensor
    paper_js: torch.Tensor | None
    topk_ids: torch.Tensor
    topk_probs: torch.Tensor

    def float32(self) -> StepMetrics:
        """The same metrics with every floating-point tensor in fp32 (ids and ranks unchanged)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return StepMetrics(
            **{
                name: value.float() if value is not None and value.is_floating_point() else value
                for name, value in values.items()
            }
        )

    def cpu(self) -> StepMetrics:
        """The same metrics on the CPU."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        moved: dict[str, Any] = {
            name: None if value is None else value.cpu() for name, value in values.items()
        }
        return StepMetrics(**moved)

    def take(self, rows: slice | torch.Tensor) -> StepMetrics:
        """The metrics of some rows (a slice or an index tensor along G)."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        taken: dict[str, Any] = {name: None if v is None else v[rows] for name, v in values.items()}
        return StepMetrics(**taken)

    @staticmethod
    def cat(parts: list[StepMetrics]) -> StepMetrics:
        """Row groups concatenated along G."""
        joined: dict[str, Any] = {}
        for f in fields(StepMetrics):
            tensors = [getattr(part, f.name) for part in parts]
            joined[f.name] = None if tensors[0] is None else torch.cat(tensors)
        return StepMetrics(**joined)


def compile_by_default(device: torch.device) -> bool:
    """Whether the sweeps are compiled on ``device`` unless told: ``EVOLENS_COMPILE`` if set, else on CUDA."""
    setting = os.environ.get(COMPILE_ENV, "").strip()
    return setting == "1" if setting in ("0", "1") else device.type == "cuda"


def choose_sweeps(
    device: torch.device, compile: bool | None, native: bool | None, chunk_entries: int
) -> SweepBackend:
    """The sweep backend of an engine on ``device``: compiled where asked (``compile``, else
    ``compile_by_default``); else on the CPU the numba kernels unless ``native`` is False or
    ``EVOLENS_NATIVE=0`` (and where they load and pass their check); else eager."""
    compiled = compile_by_default(device) if compile is None else compile
    wanted = native is not False and os.environ.get(NATIVE_ENV, "").strip() != "0"
    if not compiled and device.type == "cpu" and wanted:
        from evolens.tracing.sweep_numba import numba_sweeps

        sweeps = numba_sweeps()
        if sweeps is not None:
            return sweeps
    return ChunkedSweeps(device, compiled, chunk_entries)


@dataclass
class _Sweep:
    """The vocabulary sums of one lens over one row group: ``ChunkSums`` over all chunks, lse (G, n, 1)
    float64, and the block maxima (G, n, ceil(V / BLOCK)) fp32."""

    sums: ChunkSums
    lse: torch.Tensor
    block_max: torch.Tensor


class StepMetricsEngine:
    """Computes ``StepMetrics`` for one step from the captured states, reusing its logits buffer across steps.

    Args:
        lens: reads the states as logits (``evolens.lenses.logit``).
        top_k: how many top tokens to keep per layer.
        paper_js: also compute the paper's "JS" on the raw logit lens (free when ``lens`` is the raw lens;
            with any other lens it costs a second unembedding of every layer).
        max_bytes: the most memory the logits buffer of a row group and the sweep's temporaries may take
            together (at most half of it goes to the temporaries); None: ``MAX_BYTES`` of the device, exceeded
            only to give a row group ``MIN_GROUP_STATES`` states.
        compile: compile the sweeps with ``torch.compile`` (None: ``compile_by_default``).
        native: on the CPU, when not compiling, run the numba sweeps of ``evolens.tracing.sweep_numba``
            where they load (None or True; False: the eager PyTorch sweeps).
    """

    def __init__(
        self,
        lens: Lens,
        top_k: int = 5,
        paper_js: bool = False,
        max_bytes: int | None = None,
        compile: bool | None = None,
        native: bool | None = None,
    ) -> None:
        self.lens = lens
        self.unembed = lens.unembed
        self.raw_lens: Lens = lens if lens.name == "raw" else LogitLens(lens.unembed, normed=False)
        self.top_k = min(top_k, self.unembed.vocab_size)
        self.paper_js = paper_js
        device = self.unembed.device
        self.max_bytes = MAX_BYTES.get(device.type, DEVICE_MAX_BYTES) if max_bytes is None else max_bytes
        self.min_group_states = MIN_GROUP_STATES if max_bytes is None else 1
        # chunks of the eager and compiled sweeps: the device's size, within half of the budget
        chunk_entries = min(
            CHUNK_ENTRIES.get(device.type, DEVICE_CHUNK_ENTRIES),
            max(1, self.max_bytes // (2 * SWEEP_BYTES_PER_ENTRY)),
        )
        self.sweeps: SweepBackend = choose_sweeps(device, compile, native, chunk_entries)
        self._logits: torch.Tensor | None = None

    @property
    def backend(self) -> str:
        """How the sweeps run: "numba", "compiled" (torch.compile) or "eager"."""
        return self.sweeps.name

    @property
    def scratch_bytes(self) -> int:
        """Memory held by the logits buffer and the sweeps' buffers now."""
        logits = 0 if self._logits is None else self._logits.numel() * self._logits.element_size()
        return logits + self.sweeps.scratch_bytes

    def release(self) -> None:
        """Free the logits buffer and the sweeps' buffers (made again at the next step)."""
        self._logits = None
        self.sweeps.release()

    def __call__(self, states: torch.Tensor, tokens: torch.Tensor) -> StepMetrics:
        """states (G, L+1, d) any dtype, tokens (G,) the emitted ids -> fp32 metrics on the lens device."""
        return self.metrics64(states, tokens).float32()

    @torch.inference_mode()
    def metrics64(self, states: torch.Tensor, tokens: torch.Tensor) -> StepMetrics:
        """The metrics as computed, in float64 (``__call__`` rounds them to fp32, as traces store them)."""
        states = states.to(self.unembed.device, torch.float32)
        tokens = tokens.to(self.unembed.device, torch.int64)
        per_row = 4 * states.shape[1] * self.unembed.vocab_size
        group = max(
            1,
            (self.max_bytes - self.sweeps.reserved_bytes) // per_row,
            -(-self.min_group_states // states.shape[1]),
        )
        parts = [
            self._group(states[start:stop], tokens[start:stop])
            for start, stop in _balanced(states.shape[0], group)
        ]
        return parts[0] if len(parts) == 1 else StepMetrics.cat(parts)

    def _group(self, states: torch.Tensor, tokens: torch.Tensor) -> StepMetrics:
        logits = self._lens_logits(states, self.lens)
        token_logit = logits.gather(-1, tokens.view(-1, 1, 1).expand(*logits.shape[:2], 1))
        paper_here = self.paper_js and self.lens is self.raw_lens
        sweep = self._sweep(logits, token_logit, full=True, paper=paper_here)
        top_logits, top_ids = _top_k(logits, sweep.block_max, self.top_k)
        paper = None
        if paper_here:
            paper = self._paper_js(sweep)
        elif self.paper_js:  # last: the raw lens reuses the logits buffer
            raw = self._lens_logits(states, self.raw_lens)
            paper = self._paper_js(self._sweep(raw, token_logit, full=False, paper=True))
        return _finish(sweep, token_logit, top_logits, top_ids, paper)

    def _lens_logits(self, states: torch.Tensor, lens: Lens) -> torch.Tensor:
        """The lens logits of every lens layer in the reused buffer: (G, L+1, V) fp32."""
        shape = (*states.shape[:2], self.unembed.vocab_size)
        size = shape[0] * shape[1] * shape[2]
        if self._logits is None or self._logits.numel() < size:
            self._logits = torch.empty(size, device=self.unembed.device)
        return lens.layer_logits(states, out=self._logits[:size].view(shape))

    def _sweep(self, logits: torch.Tensor, token_logit: torch.Tensor, full: bool, paper: bool) -> _Sweep:
        """Both sweeps over the vocabulary of one lens's logits (G, L+1, V)."""
        block_max, lse = self.sweeps.normalizers(logits)
        return _Sweep(self.sweeps.sums(logits, lse, token_logit, full, paper), lse, block_max)

    def _paper_js(self, sweep: _Sweep) -> torch.Tensor:
        """The paper's "JS" between consecutive layers of the raw lens, (G, L) fp32."""
        sums, entropy = sweep.sums, -sweep.sums.p_logp
        return paper_js_from_sums(
            sums.next_slogs,
            entropy[:, :-1],
            entropy[:, 1:],
            sums.next_cross,  # type: ignore[arg-type]
            sums.prev_cross,  # type: ignore[arg-type]
            self.unembed.vocab_size,
        )


def _balanced(rows: int, most: int) -> list[tuple[int, int]]:
    """Row ranges of as few groups of at most ``most`` rows as possible, sizes within one of each other (no
    small remainder group: the lens matmul of a few states is slow per state)."""
    count = -(-rows // most)
    sizes = [rows // count + (index < rows % count) for index in range(count)]
    bounds = [sum(sizes[:index]) for index in range(count + 1)]
    return list(pairwise(bounds))


def _top_k(logits: torch.Tensor, block_max: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest logits of each row-layer and their ids, most likely first: (G, n, k) twice.

    Only the k blocks with the largest maxima can hold them, so k * BLOCK candidates are searched.
    """
    vocab = logits.shape[-1]
    if block_max.shape[-1] <= k:
        values, ids = torch.topk(logits, k, dim=-1)
        return values, ids
    first = block_max.topk(k, dim=-1).indices.unsqueeze(-1) * BLOCK
    candidates = (first + torch.arange(BLOCK, device=logits.device)).flatten(-2)
    inside = candidates < vocab  # the last block may be shorter
    values = logits.gather(-1, candidates.clamp_max(vocab - 1)).masked_fill(~inside, float("-inf"))
    values, chosen = values.topk(k, dim=-1)
    return values, candidates.gather(-1, chosen)


def _finish(
    sweep: _Sweep,
    token_logit: torch.Tensor,
    top_logits: torch.Tensor,
    top_ids: torch.Tensor,
    paper: torch.Tensor | None,
) -> StepMetrics:
    """The float64 metrics from the float64 sums (formulas in ``evolens.tracing.metrics``)."""
    sums, lse = sweep.sums, sweep.lse
    entropy = -sums.p_logp
    last = entropy[:, -1:]
    jsd_next = jsd_from_sums(sums.next_slogs, entropy[:, :-1], entropy[:, 1:])
    jsd_last = torch.cat(
        [
            jsd_from_sums(sums.last_slogs, entropy[:, :-2], last),  # type: ignore[arg-type]
            jsd_next[:, -1:],  # p_{L-1} + p_L is the last consecutive mixture
            torch.zeros_like(last),  # p_L against itself: exactly 0
        ],
        dim=-1,
    )
    kl_last = kl_from_sums(last, sums.last_cross)  # type: ignore[arg-type]
    kl_last[:, -1] = 0.0
    return StepMetrics(
        prob=(token_logit.squeeze(-1) - lse.squeeze(-1)).exp(),
        rank=sums.above.to(torch.int32),  # type: ignore[union-attr]
        entropy=entropy,
        jsd_next=jsd_next.clamp_max(LN2_FLOAT32),
        jsd_last=jsd_last.clamp_max(LN2_FLOAT32),
        kl_last=kl_last,
        paper_js=paper,
        topk_ids=top_ids.to(torch.int32),
        topk_probs=(top_logits - lse).exp(),
    )
