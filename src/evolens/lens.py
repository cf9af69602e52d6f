"""The logit lens: each layer's hidden state read through the model's own unembedding, in fp32.

One piece, ``Unembed``, serves every caller (the trace, the load-time adapter check, the interventions):

- ``normed`` (default): log_softmax(unembedding(final_norm(h_l))), the correct logit lens;
- ``raw``: log_softmax(unembedding(h_l)) for the layers before the last, as the paper's scripts do. Their
  last layer comes from the framework's ``hidden_states[-1]``, which is already normed, so ``raw`` keeps the
  final norm on the last layer and both modes end in the model's own logits.

The family's final logit soft-cap (Gemma-2 style) is applied to every layer when the model has one.
Lens layer 0 is the input of decoder layer 0 (the embeddings), lens layer l the output of decoder layer l.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import nn

from evolens.errors import UsageError

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel

LensMode = Literal["normed", "raw"]
LENS_MODES: tuple[str, ...] = get_args(LensMode)


def check_lens_mode(mode: str) -> LensMode:
    """``mode`` itself when it is a lens mode, else a ``UsageError`` naming the valid ones."""
    if mode not in LENS_MODES:
        raise UsageError(f"unknown lens mode '{mode}'; use one of: {', '.join(LENS_MODES)}")
    return mode  # type: ignore[return-value]


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap * tanh(logits / cap) in place when ``cap`` is set (Gemma-2 style final soft-capping)."""
    if cap:
        logits.div_(cap).tanh_().mul_(cap)
    return logits


@dataclass(frozen=True)
class Unembed:
    """The final norm and the unembedding of one model, in fp32 on the unembedding's device.

    Attributes:
        final_norm: the model's final norm (an fp32 copy when the model is in half precision).
        weight: the unembedding matrix, (V, d) fp32.
        bias: the unembedding bias, (V,) fp32, or None.
        softcap: the family's final logit soft-cap, or None.
    """

    final_norm: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None

    @classmethod
    def from_model(cls, loaded: LoadedModel) -> Unembed:
        """The lens of ``loaded``; shares the model's tensors when they are already fp32 (no copy)."""
        unembedding = loaded.unembedding
        weight = unembedding.weight.detach()
        bias = getattr(unembedding, "bias", None)
        final_norm = loaded.final_norm
        if any(p.dtype != torch.float32 for p in final_norm.parameters()):
            final_norm = copy.deepcopy(final_norm).float().requires_grad_(False)
        return cls(
            final_norm=final_norm,
            weight=weight.float(),
            bias=None if bias is None else bias.detach().float(),
            softcap=loaded.logit_softcap,
        )

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def logits(
        self, hidden: torch.Tensor, normed: bool = True, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unembedding of (optionally final-normed) states in fp32: (..., d) -> (..., V).

        ``out``, when given, is a (..., V) fp32 buffer the result is written into (no allocation).
        """
        hidden = hidden.to(self.device, torch.float32)
        if normed:
            hidden = self.final_norm(hidden).float()
        flat = hidden.reshape(-1, hidden.shape[-1])
        target = None if out is None else out.view(-1, self.vocab_size)
        result = torch.matmul(flat, self.weight.T, out=target)
        if self.bias is not None:
            result.add_(self.bias)
        return soft_cap(result, self.softcap).view(*hidden.shape[:-1], self.vocab_size)

    @torch.no_grad()
    def layer_logits(
        self, states: torch.Tensor, mode: LensMode = "normed", out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Lens logits of every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32.

        ``raw`` leaves layers 0..L-1 un-normed and norms the last one (see the module docstring).
        """
        if mode == "normed":
            return self.logits(states, normed=True, out=out)
        check_lens_mode(mode)
        states = states.to(self.device, torch.float32)
        states = torch.cat([states[:, :-1], self.final_norm(states[:, -1:]).float()], dim=1)
        return self.logits(states, normed=False, out=out)

    def log_probs(self, states: torch.Tensor, mode: LensMode = "normed") -> torch.Tensor:
        """log p_l for every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32 log-probabilities."""
        return torch.log_softmax(self.layer_logits(states, mode), dim=-1)
