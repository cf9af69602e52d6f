"""Lenses: each lens layer's hidden state read as a next-token distribution, in fp32.

A lens is any object with ``name`` and ``layer_logits(states)`` (the ``Lens`` protocol); the step engine,
the trace and every analysis work with any lens. Built in, both through the model's own readout
(``evolens.models.readout.Unembed``):

- ``normed`` (default): unembedding(final_norm(h_l)), the correct logit lens;
- ``raw``: unembedding(h_l) for the layers before the last, as the paper's scripts do. Their last layer
  comes from the framework's ``hidden_states[-1]``, which is already normed, so ``raw`` keeps the final
  norm on the last layer and both lenses end in the model's own logits.

Lens layer 0 is the input of decoder layer 0 (the embeddings), lens layer l the output of decoder layer l.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from evolens.errors import UsageError
from evolens.lenses.spec import LENS_MODES, LensMode
from evolens.models.readout import Unembed


def check_lens_mode(mode: str) -> LensMode:
    """``mode`` itself when it is a lens mode, else a ``UsageError`` naming the valid ones."""
    if mode not in LENS_MODES:
        raise UsageError(f"unknown lens mode '{mode}'; use one of: {', '.join(LENS_MODES)}")
    return mode  # type: ignore[return-value]


class Lens(Protocol):
    """Reads every lens layer's state as logits over the vocabulary."""

    @property
    def name(self) -> str:
        """How meta.json records the lens ("normed", "raw", ...)."""
        ...

    @property
    def unembed(self) -> Unembed:
        """The model's readout the lens ends with."""
        ...

    def layer_logits(self, states: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """States (B, L+1, d) any dtype -> logits (B, L+1, V) fp32 (written into ``out`` when given)."""
        ...


@dataclass(frozen=True)
class LogitLens:
    """The logit lens through the model's own readout; ``normed=False`` is the paper's raw lens."""

    unembed: Unembed
    normed: bool = True

    @property
    def name(self) -> str:
        return "normed" if self.normed else "raw"

    @torch.no_grad()
    def layer_logits(self, states: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Lens logits of every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32.

        The raw lens leaves layers 0..L-1 un-normed and norms the last one (see the module docstring).
        """
        if self.normed:
            return self.unembed.logits(states, normed=True, out=out)
        states = states.to(self.unembed.device, torch.float32)
        states = torch.cat([states[:, :-1], self.unembed.norm(states[:, -1:])], dim=1)
        return self.unembed.logits(states, normed=False, out=out)

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """log p_l for every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32 log-probabilities."""
        return torch.log_softmax(self.layer_logits(states), dim=-1)


def logit_lens(unembed: Unembed, mode: str = "normed") -> LogitLens:
    """The ``normed`` or ``raw`` logit lens of a readout (a ``UsageError`` for any other mode)."""
    return LogitLens(unembed, normed=check_lens_mode(mode) == "normed")
