"""Parts every tiny-model builder uses: tokenizer copies with extra tokens, tiny decoder and ViT configs,
a generic VLM chat template, randomised norms, and saving a model to a folder. Nothing here touches the
hub."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

# A chat template in the shape most VLM processors expect: images as {"type": "image"} parts.
GENERIC_VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tokenizer_with_tokens(
    tokenizer: Any, special_tokens: list[str], chat_template: str | None = None, **named: str
) -> Any:
    """A copy of ``tokenizer`` with ``special_tokens`` added (and ``named`` ones, e.g. image_token="<image>").

    The original (a session fixture shared by every test) is never modified.
    """
    copied = copy.deepcopy(tokenizer)
    extra = {"additional_special_tokens": [*special_tokens]} if special_tokens else {}
    copied.add_special_tokens({**extra, **named}, replace_extra_special_tokens=False)
    if chat_template is not None:
        copied.chat_template = chat_template
    return copied


def tokenizer_with_named_tokens(tokenizer: Any, chat_template: str | None = None, **named: str) -> Any:
    """A copy of ``tokenizer`` with model-specific *named* special tokens (``image_token="<img>"``).

    Processors such as Gemma 3's read them by name (``tokenizer.boi_token``); ``add_special_tokens`` accepts
    only the standard names, so the names are registered first. They survive save_pretrained/from_pretrained.
    """
    copied = copy.deepcopy(tokenizer)
    copied._set_model_specific_special_tokens(named)
    copied.add_special_tokens(named)
    if chat_template is not None:
        copied.chat_template = chat_template
    return copied


def tiny_decoder_kwargs(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """Config kwargs for a tiny Llama-like decoder (hidden 64, 2 layers) sized to ``tokenizer``."""
    kwargs: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    kwargs.update(overrides)
    return kwargs


def tiny_vision_kwargs(side: int, patch: int) -> dict[str, Any]:
    """Config kwargs for a tiny ViT (CLIP or SigLIP vision tower: hidden 32, 2 layers) on ``side``-pixel
    images cut into ``patch``-pixel patches."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": side,
        "patch_size": patch,
    }


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every norm weight a random value in [0.5, 1.5] (random init leaves them all at 1, which
    would hide a wrong final-norm path)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and parameter.ndim == 1:
                parameter.copy_(0.5 + torch.rand(parameter.shape, generator=generator))


def save_model_folder(model: nn.Module, processor: Any, folder: Path) -> Path:
    """Save ``model`` (in eval mode) and its processor (or, for a text-only model, its tokenizer) to
    ``folder``, a model folder that ``load_model(str(folder))`` loads like a hub model; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
