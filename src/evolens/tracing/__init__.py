"""The trace engine: divergence metrics, the fused step engine, the per-row recorder and ``trace()``.

generate() with ``evolens.models.capture`` hooks -> a lens (``evolens.lenses``) and ``StepMetricsEngine`` per
step -> ``BatchRecorder`` per batch -> ``evolens.io.store.TraceWriter``. ``Tracer`` is the seam other engines
plug into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evolens.tracing.tracer import Tracer, TraceResult, TraceSettings, trace

__all__ = ["TraceResult", "TraceSettings", "Tracer", "trace"]


def __getattr__(name: str) -> Any:
    """The engine's names, imported on first use (``import evolens.tracing`` loads no torch)."""
    if name not in __all__:
        raise AttributeError(f"module 'evolens.tracing' has no attribute '{name}'")
    from evolens.tracing import tracer

    value = getattr(tracer, name)
    globals()[name] = value
    return value
