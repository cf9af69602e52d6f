"""The family registry: every module in ``evolens.models.families`` declares ``ADAPTER``.

Adding a family = adding one file there (plus its test); nothing here changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from evolens.errors import UnsupportedArchitectureError
from evolens.models import families
from evolens.models.adapter import ModelAdapter

HOW_TO_ADD = "to add one, write a ModelAdapter in src/evolens/models/families/ (see docs/adding-a-model.md)"


@cache
def all_adapters() -> tuple[ModelAdapter, ...]:
    """All declared adapters, in module-name order."""
    found: list[ModelAdapter] = []
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        adapter = getattr(module, "ADAPTER", None)
        if isinstance(adapter, ModelAdapter):
            found.append(adapter)
    return tuple(found)


def adapter_for_architecture(architecture: str) -> ModelAdapter:
    """The adapter covering a ``config.architectures`` class name, or a clear error."""
    for adapter in all_adapters():
        if architecture in adapter.hf_classes:
            return adapter
    raise UnsupportedArchitectureError(f"architecture '{architecture}' has no evolens adapter; {HOW_TO_ADD}")


def adapter_for_family(family: str) -> ModelAdapter:
    """The adapter with this family name."""
    for adapter in all_adapters():
        if adapter.family == family:
            return adapter
    raise UnsupportedArchitectureError(f"no evolens adapter named '{family}'; {HOW_TO_ADD}")
