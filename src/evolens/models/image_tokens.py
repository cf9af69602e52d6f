"""Where the image sits in a model's input sequence: the placeholder token whose positions carry image
features (LLaVA, Qwen-VL, Idefics3/SmolVLM, PaliGemma, Gemma 3, InstructBLIP's query tokens, the demo).

Mllama has none: its image enters through cross-attention layers, not through tokens of the sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from evolens.errors import UsageError

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel

CROSS_ATTENTION_FAMILIES = ("mllama",)
"""Families whose image features are read by cross-attention, so no sequence position holds them."""


def image_token_id(loaded: LoadedModel) -> int | None:
    """The id of the placeholder token that image features replace, or None for a text-only model or a
    cross-attention family."""
    if not loaded.adapter.vision or loaded.adapter.family in CROSS_ATTENTION_FAMILIES:
        return None
    # the model's own config first: it names the token whose embeddings it replaces (a processor may name
    # the begin-of-image marker instead, as Gemma 3's does)
    for owner in (getattr(loaded.model, "config", None), loaded.model, loaded.processor):
        for name in ("image_token_id", "image_token_index"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                return value
    token = getattr(loaded.processor, "image_token", None)
    if token is not None:
        return int(loaded.tokenizer.convert_tokens_to_ids(str(getattr(token, "content", token))))
    return None


def image_positions(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the sequence positions that carry image features; a UsageError for a model whose
    image does not occupy sequence positions."""
    token = image_token_id(loaded)
    if token is None:
        raise UsageError(
            f"model '{loaded.name}' ({loaded.adapter.family}) has no image tokens in its sequence "
            "(text-only, or the image enters through cross-attention)"
        )
    return input_ids == token
