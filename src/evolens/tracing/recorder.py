"""Per-row records of one traced batch: the metrics of every step until each row's end of sequence.

``BatchRecorder.on_step`` is called once per generated step with the captured states (B, L+1, d) and the
emitted tokens (B,). Rows that already emitted an end-of-sequence token are padding from then on and are
not recorded. NaN or inf in a state stops the run with a ``NumericalError`` naming sample, step and layer.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import torch

from evolens.errors import NumericalError
from evolens.tracing.engine import StepMetrics, StepMetricsEngine
from evolens.tracing.spec import HiddenSelection
from evolens.vocabulary import ATTENTION_SHARES


class BatchRecorder:
    """Collects the step metrics (and chosen hidden states) of each row of one generation batch."""

    def __init__(
        self,
        engine: StepMetricsEngine,
        sample_ids: list[str],
        eos_token_ids: list[int],
        hidden: HiddenSelection | None = None,
    ) -> None:
        self.engine = engine
        self.sample_ids = sample_ids
        self.eos = torch.tensor(eos_token_ids or [-1])
        self.hidden_selection = hidden
        self.step = 0
        self.active = torch.ones(len(sample_ids), dtype=torch.bool)
        self._tokens: list[list[int]] = [[] for _ in sample_ids]
        self._metrics: list[list[dict[str, np.ndarray | None]]] = [[] for _ in sample_ids]
        self._hidden: list[list[tuple[int, torch.Tensor]]] = [[] for _ in sample_ids]
        self._hidden_layers: list[int] | None = None
        self.image_states: tuple[torch.Tensor, torch.Tensor] | None = None
        """With the image-token lens: the states at the prompt's image tokens, (N, L+1, d), and the (B, T)
        mask of their positions (row-major), from the batch's first pass."""

    def on_step(
        self, states: torch.Tensor, tokens: torch.Tensor, attention: torch.Tensor | None = None
    ) -> None:
        """Record one step: states (B, L+1, d) of the pass that emitted ``tokens`` (B,), and that pass's
        attention shares (B, L, H, 3) (``evolens.models.capture.AttentionShares``; None: not read)."""
        tokens = tokens.cpu()
        rows = self.active.nonzero().flatten()
        if len(rows):
            row_states = states[rows.to(states.device)]
            self._check_finite(row_states, rows)
            metrics = self.engine(row_states, tokens[rows]).cpu()
            shares = None if attention is None else attention_metrics(attention[rows])
            self._store(rows, tokens[rows], metrics, row_states, shares)
            self.active[rows] &= ~torch.isin(tokens[rows], self.eos)
        self.step += 1

    def on_steps(
        self,
        states: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        attention: torch.Tensor | None = None,
    ) -> None:
        """Record a teacher-forced batch at once: states (B, L+1, P, d) at the positions that predict the
        response tokens (B, P), of which row i has ``lengths[i]``, and the attention shares there
        (B, P, L, H, 3) when read. The same records as ``on_step`` called for each position in turn (a
        row ends after its first end-of-sequence token), with the metrics of every position from one
        engine call."""
        tokens = tokens.cpu()
        longest = states.shape[2]
        valid = torch.arange(longest)[None, :] < lengths.cpu()[:, None]
        ends = torch.isin(tokens, self.eos) & valid
        valid &= (torch.cumsum(ends.int(), 1) - ends.int()) == 0  # nothing after a row's first end
        steps, rows = valid.T.nonzero(as_tuple=True)  # step-major: the order ``on_step`` records in
        flat = states[rows.to(states.device), :, steps.to(states.device)]  # (N, L+1, d)
        metrics = self.engine(flat, tokens[rows, steps]).cpu()
        shares = None if attention is None else attention_metrics(attention[rows, steps])
        start = 0
        for step in range(longest):
            count = int((steps == step).sum())
            if count == 0:
                break
            self.step = step
            chosen = slice(start, start + count)
            self._check_finite(flat[chosen], rows[chosen])
            part = None if shares is None else {name: value[chosen] for name, value in shares.items()}
            self._store(rows[chosen], tokens[rows[chosen], step], metrics.take(chosen), flat[chosen], part)
            start += count
        self.step = longest
        self.active[:] = False

    def _check_finite(self, states: torch.Tensor, rows: torch.Tensor) -> None:
        finite = torch.isfinite(states).all(-1)  # (G, L+1)
        if bool(finite.all()):
            return
        position, layer = (~finite).nonzero()[0].tolist()
        sample = self.sample_ids[int(rows[position])]
        raise NumericalError(
            f"NaN or inf in the hidden state of sample '{sample}' at step {self.step}, lens layer {layer} "
            f"({'the embeddings' if layer == 0 else f'output of decoder layer {layer}'}); "
            "the model overflows in this dtype: try --dtype bfloat16 or float32"
        )

    def _store(
        self,
        rows: torch.Tensor,
        tokens: torch.Tensor,
        metrics: StepMetrics,
        states: torch.Tensor,
        shares: dict[str, np.ndarray] | None = None,
    ) -> None:
        arrays = {f.name: _numpy(getattr(metrics, f.name)) for f in fields(metrics)}
        arrays |= shares or {}
        keep = self.hidden_selection
        layers = self._hidden_layers = None if keep is None else keep.layer_index(states.shape[1])
        for position, row in enumerate(rows.tolist()):
            self._tokens[row].append(int(tokens[position]))
            self._metrics[row].append(
                {name: None if a is None else a[position] for name, a in arrays.items()}
            )
            if keep is not None and keep.keeps_step(self.step):
                state = states[position, layers].to("cpu", torch.float32)
                self._hidden[row].append((self.step, state))

    def check_matches(self, emitted: torch.Tensor) -> None:
        """Every row's recorded tokens must be what ``generate`` returned, (B, T_new)."""
        for row, tokens in enumerate(self._tokens):
            returned = emitted[row, : len(tokens)].tolist()
            if returned != tokens:
                raise RuntimeError(f"streamed tokens {tokens} differ from generated {returned} (row {row})")

    def token_ids(self, row: int) -> list[int]:
        return list(self._tokens[row])

    def metrics(self, row: int) -> dict[str, np.ndarray | None]:
        """Each metric of one row stacked over its steps: (n_steps, ...)."""
        steps = self._metrics[row]
        return {
            name: None if steps[0][name] is None else np.stack([np.asarray(s[name]) for s in steps])
            for name in steps[0]
        }

    def hidden(self, row: int) -> dict[str, torch.Tensor]:
        """The kept states of one row: ``hidden`` (steps, layers, d) fp16 (fp32 where fp16 would overflow),
        and the ``steps`` and ``layers`` (int32) they are; empty when none were kept."""
        kept = self._hidden[row]
        if not kept or self.hidden_selection is None:
            return {}
        states = torch.stack([state for _, state in kept])
        fits = bool(states.abs().max() < torch.finfo(torch.float16).max)
        return {
            "hidden": states.half() if fits else states,
            "steps": torch.tensor([step for step, _ in kept], dtype=torch.int32),
            "layers": torch.tensor(self._hidden_layers, dtype=torch.int32),
        }


def attention_metrics(shares: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-head shares (G, L, H, 3) -> the steps columns: ``attn_image``, ``attn_prompt`` and
    ``attn_generated`` (G, L) fp32, head-averaged (NaN for a layer without self-attention), and
    ``attn_image_heads`` (G, L, H) uint8, round(255 x each head's image share) (0 where NaN)."""
    means = shares.mean(dim=2).numpy().astype(np.float32)
    image = np.nan_to_num(shares[..., 0].numpy(), nan=0.0)
    return {
        **{name: means[..., index] for index, name in enumerate(ATTENTION_SHARES)},
        "attn_image_heads": np.rint(255 * np.clip(image, 0, 1)).astype(np.uint8),
    }


def _numpy(tensor: torch.Tensor | None) -> Any:
    return None if tensor is None else tensor.numpy()
