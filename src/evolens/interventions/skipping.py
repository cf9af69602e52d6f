"""Running a model with some decoder layers skipped, for any family (generic over ``decoder_layers``).

``skip_layers(loaded, {12, 13})`` is a context manager: inside it every decoder layer's ``forward`` is
replaced (on the instance, so hooks and attributes such as ``attention_type`` stay) by a dispatcher that
either calls the original layer or, for a skipped layer, returns its input hidden states untouched, so the
skipped layer's compute really does not happen.

The KV cache: Hugging Face caches hold one entry per attention module, indexed by its ``layer_idx``, and
the model reads the cached length (for positions and the attention mask) from one layer, usually layer 0.
A skipped layer therefore still appends a placeholder of shape (B, 1, T, 1) to its own cache entry, so
every entry's length keeps counting the tokens seen and skipping layer 0 (or any layer) keeps positions
right. The placeholder is never attended to: the layer that owns it does not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature

from evolens.interventions.plan import LayerPlan
from evolens.models.loaded import LoadedModel

CACHE_KWARGS = ("past_key_values", "past_key_value")


def as_plan(loaded: LoadedModel, layers: LayerPlan | Iterable[int]) -> LayerPlan:
    """A ``LayerPlan`` for ``loaded`` from a plan or an iterable of decoder indices (validated)."""
    if isinstance(layers, LayerPlan):
        if layers.n_layers != loaded.n_layers:
            raise ValueError(f"plan is for {layers.n_layers} layers, model has {loaded.n_layers}")
        return layers
    return LayerPlan.of(loaded.n_layers, layers)


def cache_index(layer: nn.Module, position: int) -> int:
    """The KV-cache index of this layer's attention (its ``layer_idx``), else its position."""
    for module in layer.modules():
        index = getattr(module, "layer_idx", None)
        if isinstance(index, int):
            return index
    return position


def _hidden_states_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _advance_cache(hidden: torch.Tensor, kwargs: dict[str, Any], index: int) -> None:
    """Append a (B, 1, T, 1) zero placeholder to cache entry ``index`` so its length counts these T tokens."""
    cache = next((kwargs[k] for k in CACHE_KWARGS if kwargs.get(k) is not None), None)
    if cache is None or not hasattr(cache, "update"):
        return
    placeholder = hidden.new_zeros(hidden.shape[0], 1, hidden.shape[1], 1)
    cache.update(placeholder, placeholder, index)


def _planned_forward(original: Any, skipped: bool, index: int) -> Any:
    """The forward that replaces a layer's own inside ``skip_layers``: the layer itself, or the identity."""
    if not skipped:

        def run(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs)

        return run

    def passthrough(*args: Any, **kwargs: Any) -> torch.Tensor:
        hidden = _hidden_states_argument(args, kwargs)
        _advance_cache(hidden, kwargs, index)
        return hidden

    return passthrough


@contextmanager
def skip_layers(loaded: LoadedModel, layers: LayerPlan | Iterable[int]) -> Iterator[LayerPlan]:
    """Within the block, the decoder layers in ``layers`` (0..L-1) are skipped by every forward pass.

    Every layer goes through the same dispatcher, so an empty plan exercises the same path as a real one.
    Nested use composes (the inner block sees the outer block's layers as the originals).
    """
    plan = as_plan(loaded, layers)
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for position, layer in enumerate(loaded.decoder_layers):
            saved.append((layer, layer.__dict__.get("forward")))
            layer.forward = _planned_forward(
                layer.forward, position in plan.skipped, cache_index(layer, position)
            )
        yield plan
    finally:
        for layer, previous in saved:
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


def generate_with_plan(
    loaded: LoadedModel, inputs: BatchFeature, plan: LayerPlan | Iterable[int], **generation: Any
) -> torch.Tensor:
    """``loaded.generate`` (KV cache on) with the plan's layers skipped: new token ids (B, T_new)."""
    with skip_layers(loaded, plan):
        return loaded.generate(inputs, **generation)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions of a left-padded batch (B, T) as ``generate`` computes them: cumsum - 1, pads at 0."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


@torch.inference_mode()
def greedy_without_cache(
    loaded: LoadedModel, inputs: BatchFeature, max_new_tokens: int, plan: LayerPlan | Iterable[int] = ()
) -> torch.Tensor:
    """Reference decoding: every step recomputes the whole sequence (no KV cache), greedy, never stops early.

    Returns new token ids (B, max_new_tokens). Used to check that cached generation with a plan is exact.
    Positions are left to the model (multimodal rotary schemes compute their own) unless the batch is
    left-padded, where they are counted from the attention mask as ``generate`` does.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    new_tokens: list[torch.Tensor] = []
    with skip_layers(loaded, plan):
        for _ in range(max_new_tokens):
            if bool((mask == 0).any()):  # left padding: positions as generate() counts them
                extra["position_ids"] = position_ids_from_mask(mask)
            logits = loaded.model(input_ids=ids, attention_mask=mask, use_cache=False, **extra).logits
            chosen = logits[:, -1, :].float().argmax(-1, keepdim=True)
            new_tokens.append(chosen)
            ids = torch.cat([ids, chosen], dim=1)
            mask = torch.cat([mask, torch.ones_like(chosen)], dim=1)
            _extend_per_token_inputs(extra)
    return torch.cat(new_tokens, dim=1)


def _extend_per_token_inputs(extra: dict[str, Any]) -> None:
    """Grow per-token inputs by one generated (text) token, as ``generate`` does between steps:
    ``token_type_ids`` repeat their last value, ``mm_token_type_ids`` get a 0 (text)."""
    if (types := extra.get("token_type_ids")) is not None:
        extra["token_type_ids"] = torch.cat([types, types[:, -1:]], dim=-1)
    if (types := extra.get("mm_token_type_ids")) is not None:
        extra["mm_token_type_ids"] = torch.cat([types, types.new_zeros(types.shape[0], 1)], dim=-1)


def tokens_until_eos(token_ids: torch.Tensor | list[int], eos_ids: Iterable[int]) -> list[int]:
    """The ids up to and including the first end-of-sequence id (the rest is padding)."""
    ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
    eos = set(eos_ids)
    cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    return ids[:cut]
