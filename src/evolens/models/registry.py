"""The family registry: the adapters evolens ships, those other packages declare, and those registered
from a researcher's own code.

- Built in: every module in ``evolens.models.families`` declares ``ADAPTER``.
- Other packages: an entry point in the group ``evolens.families`` (``pyproject.toml``:
  ``[project.entry-points."evolens.families"] myvlm = "mypackage.evolens_adapter:ADAPTER"``) naming a
  ``ModelAdapter``, loaded the first time an adapter is looked up.
- Your own code: ``evolens.register_family(ModelAdapter(...))`` before loading the model.

Whatever its origin, a model is checked when it loads (``evolens.models.check``: the lens at the last layer
must reproduce the model's own logits), so a wrong module path fails there, in one line.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from evolens.errors import UnsupportedArchitectureError, UsageError
from evolens.models import families
from evolens.models.adapter import ModelAdapter

ENTRY_POINT_GROUP = "evolens.families"
HOW_TO_ADD = (
    "to add one, register a ModelAdapter (evolens.register_family, or an 'evolens.families' entry point; "
    "see docs/adding-a-model.md)"
)
_REGISTERED: list[ModelAdapter] = []


def register_family(adapter: ModelAdapter, replace: bool = False) -> ModelAdapter:
    """Add ``adapter`` to the families evolens knows, for this process; returns it.

    A family name or a Hugging Face class that another adapter already claims is refused (UsageError),
    unless ``replace``: then the new adapter takes its place (e.g. to try other module paths).
    """
    if not isinstance(adapter, ModelAdapter):
        raise UsageError(f"register_family takes a ModelAdapter, not {type(adapter).__name__}")
    clashes = [
        other
        for other in all_adapters()
        if other.family == adapter.family or set(other.hf_classes) & set(adapter.hf_classes)
    ]
    if clashes and not replace:
        names = ", ".join(f"'{other.family}'" for other in clashes)
        raise UsageError(
            f"family '{adapter.family}' clashes with {names} (same name or Hugging Face class); "
            "pass replace=True to take its place"
        )
    for other in clashes:
        if other in _REGISTERED:
            _REGISTERED.remove(other)
    _REGISTERED.append(adapter)
    return adapter


def all_adapters() -> tuple[ModelAdapter, ...]:
    """Every adapter, registered ones first (they may replace), then entry points, then the built-in ones
    in module-name order."""
    return (*reversed(_REGISTERED), *_entry_point_adapters(), *_builtin_adapters())


@cache
def _builtin_adapters() -> tuple[ModelAdapter, ...]:
    found: list[ModelAdapter] = []
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        adapter = getattr(module, "ADAPTER", None)
        if isinstance(adapter, ModelAdapter):
            found.append(adapter)
    return tuple(found)


@cache
def _entry_point_adapters() -> tuple[ModelAdapter, ...]:
    found: list[ModelAdapter] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            adapter = point.load()
        except Exception as exc:  # someone else's package: say which, in one line
            raise UsageError(
                f"the '{ENTRY_POINT_GROUP}' entry point '{point.name}' fails to load: {exc}"
            ) from exc
        if not isinstance(adapter, ModelAdapter):
            raise UsageError(f"the '{ENTRY_POINT_GROUP}' entry point '{point.name}' is not a ModelAdapter")
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
