"""The hot path: every lens layer's next-token distribution of one generation step, reduced to metrics.

For G rows (samples) and lens layers 0..L, the (G, L+1, V) log-probabilities and probabilities live only in
scratch buffers reused from step to step (no allocation, so no page faults on the CPU), and every metric is
reduced from them with whole-block tensor operations, never a Python loop over layers:

- entropy, JSD and KL come from vocabulary sums: sum p log p, sum s log s for the mixtures
  s = p_l + p_{l+1} and s = p_l + p_L, and sum p_L log p_l (``metrics.*_from_sums`` finish them);
- every sum is an elementwise product into a scratch buffer and a pairwise-summed reduction;
- the rank of the emitted token is a count of larger log-probabilities; the top-k is found in two stages.

Rows are processed in groups whose buffers stay under ``max_bytes`` whatever the vocabulary (262k included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from evolens.tracing.lens import Lens, LogitLens
from evolens.tracing.metrics import jsd_from_sums, kl_from_sums, largest, paper_js_from_sums

EXP_FLOOR = -87.0
"""log of the smallest normal fp32: probabilities are computed as exp(max(log p, EXP_FLOOR)), so no
probability is 0 (log s stays finite) or denormal (slow on x86); each differs from exact by < 1.2e-38."""

SCRATCH_BUFFERS = 4
"""(G, L+1, V) fp32 buffers one group needs: log p, p (first the logits), mixture, log of the mixture;
plus one boolean buffer of the same shape for the rank's comparison."""
SCRATCH_BYTES_PER_ENTRY = SCRATCH_BUFFERS * 4 + 1


@dataclass
class StepMetrics:
    """Per-layer metrics of one step for G rows. Shapes: (G, L+1) unless noted; fp32 unless noted.

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

    def cpu(self) -> StepMetrics:
        """The same metrics on the CPU."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        moved: dict[str, Any] = {
            name: None if value is None else value.cpu() for name, value in values.items()
        }
        return StepMetrics(**moved)

    @staticmethod
    def cat(parts: list[StepMetrics]) -> StepMetrics:
        """Row groups concatenated along G."""
        joined: dict[str, Any] = {}
        for f in fields(StepMetrics):
            tensors = [getattr(part, f.name) for part in parts]
            joined[f.name] = None if tensors[0] is None else torch.cat(tensors)
        return StepMetrics(**joined)


@dataclass
class _LensBlock:
    """One row group's distributions in scratch buffers: (G, L+1, V) log p and p; (G, L+1) entropy."""

    logp: torch.Tensor
    p: torch.Tensor
    entropy: torch.Tensor


class StepMetricsEngine:
    """Computes ``StepMetrics`` for one step from the captured states, reusing its buffers across steps.

    Args:
        lens: reads the states as logits (``evolens.tracing.lens``).
        top_k: how many top tokens to keep per layer.
        paper_js: also compute the paper's "JS" on the raw logit lens (free when ``lens`` is the raw lens;
            with any other lens it costs a second unembedding of every layer).
        max_bytes: the most scratch memory one row group may take (all buffers together).
    """

    def __init__(
        self,
        lens: Lens,
        top_k: int = 5,
        paper_js: bool = False,
        max_bytes: int = 512 * 2**20,
    ) -> None:
        self.lens = lens
        self.unembed = lens.unembed
        self.raw_lens: Lens = lens if lens.name == "raw" else LogitLens(lens.unembed, normed=False)
        self.top_k = min(top_k, self.unembed.vocab_size)
        self.paper_js = paper_js
        self.max_bytes = max_bytes
        self._buffers: dict[str, torch.Tensor] = {}

    @property
    def scratch_bytes(self) -> int:
        """Memory held by the scratch buffers now."""
        return sum(buffer.numel() * buffer.element_size() for buffer in self._buffers.values())

    @torch.inference_mode()
    def __call__(self, states: torch.Tensor, tokens: torch.Tensor) -> StepMetrics:
        """states (G, L+1, d) any dtype, tokens (G,) the emitted ids -> metrics on the lens device."""
        states = states.to(self.unembed.device, torch.float32)
        tokens = tokens.to(self.unembed.device, torch.int64)
        per_row = SCRATCH_BYTES_PER_ENTRY * states.shape[1] * self.unembed.vocab_size
        group = max(1, self.max_bytes // per_row)
        parts = [
            self._group(states[start : start + group], tokens[start : start + group])
            for start in range(0, states.shape[0], group)
        ]
        return parts[0] if len(parts) == 1 else StepMetrics.cat(parts)

    def _group(self, states: torch.Tensor, tokens: torch.Tensor) -> StepMetrics:
        block = self._distributions(states, self.lens)
        logp, p, entropy = block.logp, block.p, block.entropy
        token_logp = logp.gather(-1, tokens.view(-1, 1, 1).expand(*logp.shape[:2], 1))
        rank = torch.gt(logp, token_logp, out=self._flags(logp.shape)).sum(-1, dtype=torch.int32)
        top_logp, top_ids = largest(logp, self.top_k)
        last_p = p[:, -1:]
        next_slogs = self._mixture_slogs(p[:, :-1], p[:, 1:])
        last_slogs = self._mixture_slogs(p, last_p)
        last_cross = self._dot(logp, last_p)
        paper = None  # computed last: the raw lens of the normed mode reuses the scratch buffers
        if self.paper_js:
            raw = block if self.lens is self.raw_lens else self._distributions(states, self.raw_lens)
            paper = self._paper_js(raw)
        jsd_last = jsd_from_sums(last_slogs, entropy, entropy[:, -1:])
        kl_last = kl_from_sums(entropy[:, -1:], last_cross)
        jsd_last[:, -1] = kl_last[:, -1] = 0.0  # p_L against itself: exactly 0, not fp32 rounding
        return StepMetrics(
            prob=token_logp.squeeze(-1).exp(),
            rank=rank,
            entropy=entropy,
            jsd_next=jsd_from_sums(next_slogs, entropy[:, :-1], entropy[:, 1:]),
            jsd_last=jsd_last,
            kl_last=kl_last,
            paper_js=paper,
            topk_ids=top_ids.to(torch.int32),
            topk_probs=top_logp.exp(),
        )

    def _distributions(self, states: torch.Tensor, lens: Lens) -> _LensBlock:
        """log p and p of every lens layer in scratch buffers, and their entropy: (G, L+1, ·)."""
        shape = (*states.shape[:2], self.unembed.vocab_size)
        logits = lens.layer_logits(states, out=self._buffer("p", shape))
        logp = torch.log_softmax(logits, -1, out=self._buffer("logp", shape))
        p = torch.clamp(logp, min=EXP_FLOOR, out=logits).exp_()  # the logits are no longer needed
        return _LensBlock(logp, p, -self._dot(p, logp))

    def _mixture_slogs(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """sum_v s_v log s_v for s = first + second (broadcast), (G, n, V) -> (G, n)."""
        shape = torch.broadcast_shapes(first.shape, second.shape)
        mixture = torch.add(first, second, out=self._buffer("mixture", shape))
        logs = torch.log(mixture, out=self._buffer("logs", shape))
        return logs.mul_(mixture).sum(-1)

    def _dot(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """sum_v first * second (broadcast), (G, n, V) -> (G, n), through the "logs" scratch buffer.

        An elementwise product then a pairwise-summed reduction: a batched matrix product would sum the
        V terms one after the other and lose ~1e-3 in fp32 on a 262k vocabulary.
        """
        shape = torch.broadcast_shapes(first.shape, second.shape)
        return torch.mul(first, second, out=self._buffer("logs", shape)).sum(-1)

    def _paper_js(self, raw: _LensBlock) -> torch.Tensor:
        """The paper's "JS" between consecutive layers of the raw lens, (G, L)."""
        p, logp, entropy = raw.p, raw.logp, raw.entropy
        return paper_js_from_sums(
            self._mixture_slogs(p[:, :-1], p[:, 1:]),
            entropy[:, :-1],
            entropy[:, 1:],
            self._dot(p[:, 1:], logp[:, :-1]),
            self._dot(p[:, :-1], logp[:, 1:]),
            self.unembed.vocab_size,
        )

    def _flags(self, shape: torch.Size) -> torch.Tensor:
        """A reusable boolean scratch tensor of ``shape`` (for comparisons)."""
        size = shape.numel()
        flags = self._buffers.get("flags")
        if flags is None or flags.numel() < size:
            flags = self._buffers["flags"] = torch.empty(size, dtype=torch.bool, device=self.unembed.device)
        return flags[:size].view(shape)

    def _buffer(self, name: str, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """A reusable fp32 scratch tensor of ``shape`` (grown when too small, never shrunk)."""
        size = 1
        for n in shape:
            size *= n
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(size, device=self.unembed.device)
            self._buffers[name] = buffer
        return buffer[:size].view(shape)
