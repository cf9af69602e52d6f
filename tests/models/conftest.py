"""Shared builders for the per-family adapter tests: devices, a test image, tokenizers, save-and-load.

Every family test builds a tiny random model from its config class and a processor assembled locally
(no hub), saves both with ``save_pretrained`` and loads them back through ``evolens.load_model``, so the
real path (``config.architectures`` -> adapter lookup -> auto class) is what gets tested.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from evolens.models import LoadedModel, load_model
from tests.conftest import randomize_norms

DEVICE_DTYPES = [
    pytest.param(("cpu", torch.float32), id="cpu-fp32"),
    pytest.param(
        ("cuda", torch.bfloat16),
        id="cuda-bf16",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


@pytest.fixture(scope="session", params=DEVICE_DTYPES)
def device_dtype(request: pytest.FixtureRequest) -> tuple[str, torch.dtype]:
    """("cpu", float32) always; ("cuda", bfloat16) when a GPU is present (skipped otherwise).

    Session-scoped so a family's model can be built and loaded once per module and device.
    """
    return request.param


@pytest.fixture(scope="session")
def test_image() -> Image.Image:
    """A 96x80 RGB image with structure (a red square on a blue-green gradient), not a flat colour."""
    y, x = np.mgrid[0:80, 0:96]
    pixels = np.stack([x * 255 // 95, y * 255 // 79, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    pixels[20:50, 30:60] = (230, 20, 20)
    return Image.fromarray(pixels, mode="RGB")


@pytest.fixture(scope="session")
def second_image() -> Image.Image:
    """A second, different image (other size, other content) for batch tests."""
    y, x = np.mgrid[0:64, 0:120]
    pixels = np.stack([255 - x * 2, np.full_like(x, 40), y * 4], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


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


def save_and_load(
    model: nn.Module, processor: Any, tmp_path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Randomise norms, save model + processor to ``tmp_path`` and load them through ``load_model``."""
    randomize_norms(model)
    model.eval().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    return load_model(str(tmp_path), device=device, dtype=dtype)


# A chat template in the shape most VLM processors expect: images as {"type": "image"} parts.
GENERIC_VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def count_tokens(input_ids: torch.Tensor, token_id: int) -> list[int]:
    """How many times ``token_id`` occurs in each row of ``input_ids`` (B, T)."""
    return (input_ids == token_id).sum(dim=1).tolist()


def assert_image_reaches_the_decoder(loaded: LoadedModel, first: Image.Image, second: Image.Image) -> None:
    """Two different images under the same prompt must give different last-position logits."""
    with torch.inference_mode():
        logits = [
            loaded.model(**loaded.build_inputs(["Describe it."], [image])).logits[0, -1].float()
            for image in (first, second)
        ]
    assert not torch.allclose(logits[0], logits[1])


def assert_batch_equals_one_by_one(
    loaded: LoadedModel, prompts: list[str], images: list[Image.Image], max_new_tokens: int = 4
) -> None:
    """A left-padded batch must emit, row by row, exactly the tokens each row emits alone."""
    inputs = loaded.build_inputs(prompts, images)
    assert bool(inputs["attention_mask"][:, -1].all()), "every row must end on a real token (left padding)"
    batch = loaded.generate(inputs, max_new_tokens=max_new_tokens)
    for row, (prompt, image) in enumerate(zip(prompts, images, strict=True)):
        single = loaded.generate(loaded.build_inputs([prompt], [image]), max_new_tokens=max_new_tokens)
        assert torch.equal(single[0], batch[row]), f"row {row}: batch {batch[row]} != alone {single[0]}"


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
