"""Loading models: ``load_model("demo")`` or a Hugging Face id/path from the local cache."""

from __future__ import annotations

from evolens.models.load import load_model
from evolens.models.loaded import LoadedModel

__all__ = ["LoadedModel", "load_model"]
