"""The trace engine: divergence metrics, the fused step engine, the per-row recorder and ``trace()``.

generate() with ``evolens.models.capture`` hooks -> a lens (``evolens.lenses``) and ``StepMetricsEngine`` per
step -> ``BatchRecorder`` per batch -> ``evolens.io.store.TraceWriter``. ``Tracer`` is the seam other engines
plug into.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evolens.tracing.engines import TraceEngine, TraceJob, TraceResult, engine_for
    from evolens.tracing.ray_engine import RayEngine
    from evolens.tracing.spec import RayOptions, TraceSpec
    from evolens.tracing.tracer import LocalEngine, Tracer, trace

_MODULES = {
    "trace": "tracer",
    "Tracer": "tracer",
    "LocalEngine": "tracer",
    "RayEngine": "ray_engine",
    "TraceSpec": "spec",
    "RayOptions": "spec",
    "TraceEngine": "engines",
    "TraceJob": "engines",
    "TraceResult": "engines",
    "engine_for": "engines",
}
__all__ = [
    "LocalEngine",
    "RayEngine",
    "RayOptions",
    "TraceEngine",
    "TraceJob",
    "TraceResult",
    "TraceSpec",
    "Tracer",
    "engine_for",
    "trace",
]


def __getattr__(name: str) -> Any:
    """The package's names, imported on first use (``import evolens.tracing`` loads no torch)."""
    if name not in _MODULES:
        raise AttributeError(f"module 'evolens.tracing' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"evolens.tracing.{_MODULES[name]}"), name)
    globals()[name] = value
    return value
