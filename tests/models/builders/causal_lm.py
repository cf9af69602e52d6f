"""Text-only decoders of the ``causal_lm`` adapter (Llama, Mistral, Qwen2, Qwen3), built from their configs.

SmolLM2 itself (a Llama) is tested on its real weights in tests/test_models_causal_lm.py; here each class is
built tiny and random and saved with SmolLM2's tokenizer (the "processor" of a text-only model).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from tests.models.builders.common import tiny_decoder_kwargs

# class -> what makes it differ from Llama, set so the tiny model exercises it
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {},
    "MistralForCausalLM": {"sliding_window": 8},  # shorter than the prompts: the window really cuts
    "Qwen2ForCausalLM": {},
    "Qwen3ForCausalLM": {"head_dim": 16},  # Qwen3 also normalises q and k (randomised norms)
}


def tiny_causal_lm(
    architecture: str, tokenizer: Any, seed: int = 0, **overrides: Any
) -> transformers.PreTrainedModel:
    """A tiny random ``architecture`` (a key of ``ARCHITECTURES``: 2 layers, hidden 64) sized to
    ``tokenizer``, its weights drawn after ``torch.manual_seed(seed)``; ``overrides`` change its config
    (e.g. ``num_hidden_layers=4``)."""
    model_class = getattr(transformers, architecture)
    kwargs = tiny_decoder_kwargs(tokenizer, **{**ARCHITECTURES[architecture], **overrides})
    config = model_class.config_class(**kwargs)
    torch.manual_seed(seed)
    return model_class(config)


def build_causal_lm(architecture: str, smollm2_tokenizer: Any) -> tuple[transformers.PreTrainedModel, Any]:
    """A 2-layer ``architecture`` (a key of ``ARCHITECTURES``) and SmolLM2's tokenizer."""
    return tiny_causal_lm(architecture, smollm2_tokenizer), smollm2_tokenizer
