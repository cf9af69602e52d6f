"""evolens: how knowledge evolves, layer by layer, inside vision-language models while they generate.

``import evolens`` stays light (no torch, no transformers): ``load_model``, ``trace``, ``TraceSpec``,
``engine_for``, ``register_family``, ``ModelAdapter`` and ``LoadedModel`` import what they need the first
time they are used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from evolens.errors import EvolensError

try:
    __version__ = version("evolens")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "EvolensError",
    "LoadedModel",
    "ModelAdapter",
    "RayOptions",
    "TraceSpec",
    "__version__",
    "engine_for",
    "load_model",
    "register_family",
    "trace",
]

if TYPE_CHECKING:
    from evolens.models.adapter import ModelAdapter
    from evolens.models.load import load_model
    from evolens.models.loaded import LoadedModel
    from evolens.models.registry import register_family
    from evolens.tracing.engines import engine_for
    from evolens.tracing.spec import RayOptions, TraceSpec
    from evolens.tracing.tracer import trace

_LAZY = {
    "load_model": ("evolens.models.load", "load_model"),
    "LoadedModel": ("evolens.models.loaded", "LoadedModel"),
    "ModelAdapter": ("evolens.models.adapter", "ModelAdapter"),
    "register_family": ("evolens.models.registry", "register_family"),
    "trace": ("evolens.tracing.tracer", "trace"),
    "TraceSpec": ("evolens.tracing.spec", "TraceSpec"),
    "RayOptions": ("evolens.tracing.spec", "RayOptions"),
    "engine_for": ("evolens.tracing.engines", "engine_for"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'evolens' has no attribute '{name}'")
    import importlib

    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
