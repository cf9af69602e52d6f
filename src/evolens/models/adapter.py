"""Declarative model-family adapters: where the decoder layers, final norm and unembedding live.

An adapter is data, not code: generic functions resolve its dotted module paths on a loaded model.
Each path field holds candidates tried in order, so one adapter survives transformers moving a module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from evolens.errors import UnsupportedArchitectureError

if TYPE_CHECKING:
    from torch import nn

InputStyle = Literal["text_chat", "processor_chat", "processor_prompt", "demo"]


@dataclass(frozen=True)
class ModelAdapter:
    """Where things are in one family of models, and how to build its inputs.

    Attributes:
        family: short family name shown to users ("llava", "causal_lm", "demo", ...).
        hf_classes: values of ``config.architectures[0]`` this adapter covers.
        auto_class: transformers class used to load it (e.g. "AutoModelForImageTextToText").
        decoder_layers: candidate dotted paths to the ``nn.ModuleList`` of decoder layers.
        final_norm: candidate dotted paths to the norm applied after the last decoder layer.
        unembedding: candidate dotted paths to the output projection (``lm_head``).
        embed_tokens: candidate dotted paths to the token embedding.
        inputs: how prompts (and images) become model inputs; see ``evolens.models.inputs``.
        text_config: attribute of the model config holding the decoder's config ("" = the config itself).
        logit_softcap: decoder-config attribute of a final logit soft-cap (Gemma-2 style), if any.
        vision: whether the family takes images.
        image_first: for processor chats, whether the image precedes the text in the user turn.
        prompt_template: for ``processor_prompt`` families, the prompt format ("{prompt}" is replaced).
        images_per_prompt: the processor wants one list of images per prompt, not one flat list (SmolVLM).
        response_inputs: for teacher forcing (``evolens.tracing.scoring``), the value a response token takes
            in each per-token input beside ``input_ids`` whose value differs from the prompt's last token's
            (PaliGemma: ``{"token_type_ids": 1}``, the causal suffix).
        image_layout: how the image tokens map to regions of the image, a key of
            ``evolens.models.image_regions.LAYOUTS`` ("grid", "anyres", "merged_patches", "tiles", "cells",
            "queries"); None: the family's tokens have no known place (their boxes are null).
    """

    family: str
    hf_classes: tuple[str, ...]
    auto_class: str
    decoder_layers: tuple[str, ...]
    final_norm: tuple[str, ...]
    unembedding: tuple[str, ...] = ("lm_head",)
    embed_tokens: tuple[str, ...] = ("model.embed_tokens", "model.language_model.embed_tokens")
    inputs: InputStyle = "processor_chat"
    text_config: str = "text_config"
    logit_softcap: str | None = None
    vision: bool = True
    image_first: bool = True
    prompt_template: str = "{prompt}"
    images_per_prompt: bool = False
    response_inputs: dict[str, int] = field(default_factory=dict)
    image_layout: str | None = None
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def resolve(self, model: nn.Module, role: str) -> nn.Module:
        """Return the module for ``role`` ("decoder_layers", "final_norm", "unembedding", "embed_tokens")."""
        candidates: tuple[str, ...] = getattr(self, role)
        for path in candidates:
            module = get_submodule_or_none(model, path)
            if module is not None:
                return module
        raise UnsupportedArchitectureError(
            f"adapter '{self.family}' found no {role} in {type(model).__name__} "
            f"(tried {', '.join(candidates)}); see docs/adding-a-model.md"
        )


def get_submodule_or_none(model: nn.Module, path: str) -> nn.Module | None:
    """``model.get_submodule(path)``, or None when any part of the dotted path is missing."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None
