"""Turning prompts (and images) into model inputs, one strategy per ``ModelAdapter.inputs`` value.

Every builder returns a left-padded batch (``input_ids`` and ``attention_mask`` of shape (B, T), plus
whatever pixel tensors the processor makes), so the last position of every row predicts the next token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image
from transformers import BatchFeature

from evolens.errors import InputError

TRAINING_ONLY_KEYS = frozenset({"labels"})

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel


def build_inputs(
    loaded: LoadedModel, prompts: Sequence[str], images: Sequence[Image.Image | None] | None = None
) -> BatchFeature:
    """Build one left-padded batch. ``images[i]`` may be None for a text-only row."""
    if not prompts:
        raise InputError("no prompts given")
    for prompt in prompts:
        if not prompt or not prompt.strip():
            raise InputError("empty prompt: give a non-empty --prompt")
    images = list(images) if images is not None else [None] * len(prompts)
    if len(images) != len(prompts):
        raise InputError(f"{len(images)} images for {len(prompts)} prompts")
    style = loaded.adapter.inputs
    if style == "text_chat" or (all(img is None for img in images) and not loaded.adapter.vision):
        if any(img is not None for img in images):
            raise InputError(f"model '{loaded.name}' is text-only and takes no images")
        return _text_chat(loaded, prompts)
    if style in ("processor_chat", "demo"):
        return _processor_chat(loaded, prompts, images)
    if style == "processor_prompt":
        return _processor_prompt(loaded, prompts, images)
    raise InputError(f"unknown input style '{style}'")


def _chat_text(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(str(m["content"]) for m in messages)


def _text_chat(loaded: LoadedModel, prompts: Sequence[str]) -> BatchFeature:
    texts = [_chat_text(loaded.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    has_bos_in_template = bool(getattr(loaded.tokenizer, "chat_template", None))
    encoded = loaded.tokenizer(
        texts,
        padding=True,
        padding_side="left",
        return_tensors="pt",
        add_special_tokens=not has_bos_in_template,
    )
    return BatchFeature(dict(encoded))


def _processor_chat(
    loaded: LoadedModel, prompts: Sequence[str], images: Sequence[Image.Image | None]
) -> BatchFeature:
    processor: Any = loaded.processor
    texts = []
    for prompt, image in zip(prompts, images, strict=True):
        content: list[dict[str, str]] = [{"type": "text", "text": prompt}]
        if image is not None:
            image_part = {"type": "image"}
            content = [image_part, *content] if loaded.adapter.image_first else [*content, image_part]
        conversation = [{"role": "user", "content": content}]
        texts.append(processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False))
    return _call_processor(loaded, texts, images)


def _processor_prompt(
    loaded: LoadedModel, prompts: Sequence[str], images: Sequence[Image.Image | None]
) -> BatchFeature:
    texts = [loaded.adapter.prompt_template.format(prompt=p) for p in prompts]
    return _call_processor(loaded, texts, images)


def _call_processor(
    loaded: LoadedModel, texts: list[str], images: Sequence[Image.Image | None]
) -> BatchFeature:
    present = [img for img in images if img is not None]
    if present and len(present) != len(images):
        raise InputError("a batch mixes rows with and without images; trace them in separate batches")
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.tokenizer)
    tokenizer.padding_side = "left"
    kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
    if present:
        kwargs["images"] = [[img] for img in present] if loaded.adapter.images_per_prompt else present
    processor: Any = loaded.processor
    encoded = processor(**kwargs)
    # training targets some processors add (PaliGemma's "labels") are no model input for generation
    return BatchFeature({k: v for k, v in encoded.items() if k not in TRAINING_ONLY_KEYS})
