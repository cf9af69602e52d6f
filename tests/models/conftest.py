"""Fixtures of the model-family tests: two test images and the tiny models of the builder table.

Every tiny model is built from its config and a processor assembled locally (no hub; see
``tests/models/builders``), saved with ``save_pretrained`` and loaded back through ``evolens.load_model``,
so the real path (``config.architectures`` -> adapter lookup -> auto class) is what gets tested. Each
(model, device) is built once per session and shared by the conformance suite and the family files.
Tests ask for ``tiny_model`` under ``@over(rows)`` (tests.models.builders), which gives them ``family`` (the
table row) and ``device_dtype`` (("cpu", float32) always; ("cuda", bfloat16) when a GPU is present).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from evolens.models import LoadedModel, load_model
from tests.conftest import randomize_norms
from tests.models.builders import TinyFamily

DeviceDtype = tuple[str, torch.dtype]


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


def save_and_load(
    model: nn.Module, processor: Any, tmp_path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Randomise norms, save model + processor to ``tmp_path`` and load them through ``load_model``."""
    randomize_norms(model)
    model.eval().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    return load_model(str(tmp_path), device=device, dtype=dtype)


class TinyModels:
    """The loaded tiny model of each (table row, device), built, saved and loaded on first use."""

    def __init__(self, smollm2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tokenizer = smollm2_tokenizer
        self._tmp_path_factory = tmp_path_factory
        self._loaded: dict[tuple[str, str, torch.dtype], LoadedModel] = {}

    def get(self, family: TinyFamily, device_dtype: DeviceDtype) -> LoadedModel:
        """``family``'s model on ``device_dtype``, loaded through ``load_model``."""
        device, dtype = device_dtype
        key = (family.id, device, dtype)
        if key not in self._loaded:
            model, processor = family.build(self._tokenizer)
            folder = self._tmp_path_factory.mktemp(family.id.replace("/", "-"))
            self._loaded[key] = save_and_load(model, processor, folder, device, dtype)
        return self._loaded[key]


@pytest.fixture(scope="session")
def tiny_models(smollm2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """The session's cache of tiny models (a few tens of MB each, mostly SmolLM2's 49k-row vocabulary)."""
    return TinyModels(smollm2_tokenizer, tmp_path_factory)


@pytest.fixture
def tiny_model(family: TinyFamily, device_dtype: DeviceDtype, tiny_models: TinyModels) -> LoadedModel:
    """The tiny model of the test's ``family`` row on its ``device_dtype`` (both from ``@over(rows)``)."""
    return tiny_models.get(family, device_dtype)


def count_tokens(input_ids: torch.Tensor, token_id: int) -> list[int]:
    """How many times ``token_id`` occurs in each row of ``input_ids`` (B, T)."""
    return (input_ids == token_id).sum(dim=1).tolist()


def image_or_none(loaded: LoadedModel, image: Image.Image) -> list[Image.Image] | None:
    """``[image]`` for a vision model, None for a text-only one (``build_inputs``'s images argument)."""
    return [image] if loaded.adapter.vision else None


def with_adapter(loaded: LoadedModel, **changes: object) -> LoadedModel:
    """``loaded`` with some adapter fields replaced: a deliberately wrong adapter for the load-time check."""
    adapter = dataclasses.replace(loaded.adapter, **changes)
    return LoadedModel("altered", loaded.model, loaded.tokenizer, loaded.processor, adapter)
