"""Models: declarative family adapters, the registry, loading, inputs, layer capture and the readout.

``load_model("demo")`` or a Hugging Face id/path from the local cache -> ``LoadedModel``. Importing this
package (for the registry, say) loads neither torch nor transformers; ``load_model`` and ``LoadedModel`` do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evolens.models.load import load_model
    from evolens.models.loaded import LoadedModel

__all__ = ["LoadedModel", "load_model"]

_LAZY = {"load_model": "evolens.models.load", "LoadedModel": "evolens.models.loaded"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'evolens.models' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
