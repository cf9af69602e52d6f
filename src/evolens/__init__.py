"""evolens: how knowledge evolves, layer by layer, inside vision-language models while they generate.

``import evolens`` stays light (no torch, no transformers): ``load_model``, ``trace`` and ``LoadedModel``
import the engine the first time they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evolens.errors import EvolensError

__version__ = "0.1.0"

__all__ = ["EvolensError", "LoadedModel", "__version__", "load_model", "trace"]

if TYPE_CHECKING:
    from evolens.models.load import load_model
    from evolens.models.loaded import LoadedModel
    from evolens.tracing.tracer import trace

_LAZY = {
    "load_model": ("evolens.models.load", "load_model"),
    "LoadedModel": ("evolens.models.loaded", "LoadedModel"),
    "trace": ("evolens.tracing.tracer", "trace"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'evolens' has no attribute '{name}'")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
