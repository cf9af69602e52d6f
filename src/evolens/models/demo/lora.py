"""Low-rank (LoRA) updates of the demo decoder: stored as factors, merged into the weights on load.

Training attaches adapters with peft (``scripts/demo/training.py``, ``attach_lora``); what is saved is each
adapted linear layer's factors A (rank, in) and B (out, rank). Loading needs no peft: ``merge_lora`` adds
``scale * B @ A`` to the layer's weight, so the loaded decoder is a plain ``LlamaForCausalLM`` whose final
norm and unembedding are SmolLM2's own (the lens at the last layer still equals the logits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from evolens.errors import ModelLoadError

LORA_FILE = "decoder_lora.safetensors"
A_SUFFIX, B_SUFFIX = ".lora_A", ".lora_B"


@dataclass(frozen=True)
class LoraSettings:
    """Which decoder layers get low-rank updates, of what rank, and their scale ``alpha / rank``."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraSettings:
        return cls(int(data["rank"]), float(data["alpha"]), tuple(data["targets"]))


@torch.no_grad()
def merge_lora(decoder: nn.Module, factors: dict[str, torch.Tensor], scale: float) -> int:
    """Add ``scale * B @ A`` to the weight of every linear layer named in ``factors`` (keys
    ``<module name>.lora_A`` (rank, in) and ``<module name>.lora_B`` (out, rank)); returns how many layers
    changed. A factor without its partner, or naming no linear layer of the right shape, is an error."""
    modules = dict(decoder.named_modules())
    names = sorted({key.removesuffix(A_SUFFIX).removesuffix(B_SUFFIX) for key in factors})
    for name in names:
        a, b = factors.get(name + A_SUFFIX), factors.get(name + B_SUFFIX)
        layer = modules.get(name)
        if a is None or b is None or not isinstance(layer, nn.Linear):
            raise ModelLoadError(f"the demo LoRA factors for '{name}' do not fit the decoder")
        if (b.shape[0], a.shape[1]) != tuple(layer.weight.shape) or a.shape[0] != b.shape[1]:
            raise ModelLoadError(
                f"the demo LoRA factors for '{name}' ({tuple(b.shape)} @ {tuple(a.shape)}) do not match the "
                f"layer's weight {tuple(layer.weight.shape)}"
            )
        # Out of place: the loaded weights are memory-mapped, and writing them in place copies them 4 KiB
        # page by page (benchmarks/demo_load.py: 1.5 s for SmolLM2 against 0.13 s for fresh tensors).
        weight = layer.weight
        weight.data = torch.addmm(weight, b.to(weight.dtype), a.to(weight.dtype), alpha=scale)
    return len(names)
