"""Fixtures of the model-family tests: two test images and the tiny models of the builder table.

Every tiny model is built from its config and a processor assembled locally (no hub; see
``tests/models/builders``), saved with ``save_pretrained`` and loaded back through ``evolens.load_model``,
so the real path (``config.architectures`` -> adapter lookup -> auto class) is what gets tested. Each
model is built once per session (the ``tiny_models`` fixture of tests/conftest.py, shared with the tests
outside tests/models) and loaded once per device.
Tests ask for ``tiny_model`` under ``@over(rows)`` (tests.models.builders), which gives them ``family`` (the
table row) and ``device_dtype`` (("cpu", float32) always; ("cuda", bfloat16) when a GPU is present).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from evolens.models import LoadedModel
from tests.models.builders import TinyFamily
from tests.models.builders.saved import DeviceDtype, TinyModels


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
