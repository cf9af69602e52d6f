"""A model's readout: its final norm and unembedding, in fp32 (what every lens ends with).

``Unembed`` is the one implementation of unembedding(final_norm(h)); the load-time adapter check, the lenses
of ``evolens.tracing`` and the interventions all use it. The family's final logit soft-cap (Gemma-2 style)
is applied when the model has one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel


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
        """The readout of ``loaded``; shares the model's tensors when they are already fp32 (no copy)."""
        unembedding = loaded.unembedding
        assert isinstance(unembedding.weight, torch.Tensor)
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
        return int(self.weight.shape[0])

    def norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """final_norm(h) in fp32: (..., d) -> (..., d)."""
        return self.final_norm(hidden.to(self.device, torch.float32)).float()

    def logits(
        self, hidden: torch.Tensor, normed: bool = True, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unembedding of (optionally final-normed) states in fp32: (..., d) -> (..., V).

        ``out``, when given, is a (..., V) fp32 buffer the result is written into (no allocation).
        """
        hidden = self.norm(hidden) if normed else hidden.to(self.device, torch.float32)
        flat = hidden.reshape(-1, hidden.shape[-1])
        target = None if out is None else out.view(-1, self.vocab_size)
        result = torch.matmul(flat, self.weight.T, out=target)
        if self.bias is not None:
            result.add_(self.bias)
        return soft_cap(result, self.softcap).view(*hidden.shape[:-1], self.vocab_size)
