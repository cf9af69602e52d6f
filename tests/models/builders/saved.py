"""The tiny models of the builder table saved to folders and loaded back through ``evolens.load_model``, so
the real path (``config.architectures`` -> adapter lookup -> auto class) is what gets tested.

``TinyModels`` (the session fixture ``tiny_models`` of tests/conftest.py) builds and saves each row once per
test session, and loads each (row, device, dtype) once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from evolens.models import LoadedModel, load_model
from tests.models.builders import TinyFamily
from tests.models.builders.common import randomize_norms, save_model_folder

DeviceDtype = tuple[str, torch.dtype]


class TinyModels:
    """Each table row's model folder, and its loaded model per (device, dtype), made on first use."""

    def __init__(self, smollm2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tokenizer = smollm2_tokenizer
        self._tmp_path_factory = tmp_path_factory
        self._folders: dict[str, Path] = {}
        self._loaded: dict[tuple[str, str, torch.dtype], LoadedModel] = {}

    def folder(self, family: TinyFamily) -> Path:
        """``family``'s model folder: built, its norms randomised, model and processor saved."""
        if family.id not in self._folders:
            model, processor = family.build(self._tokenizer)
            randomize_norms(model)
            folder = self._tmp_path_factory.mktemp(family.id.replace("/", "-"))
            self._folders[family.id] = save_model_folder(model, processor, folder)
        return self._folders[family.id]

    def get(self, family: TinyFamily, device_dtype: DeviceDtype) -> LoadedModel:
        """``family``'s model on ``device_dtype``, loaded from its folder through ``load_model``."""
        device, dtype = device_dtype
        key = (family.id, device, dtype)
        if key not in self._loaded:
            self._loaded[key] = load_model(str(self.folder(family)), device=device, dtype=dtype)
        return self._loaded[key]
