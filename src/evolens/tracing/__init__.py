"""The trace engine: lenses, divergence metrics, the fused step engine, the per-row recorder and ``trace()``.

generate() with ``evolens.models.capture`` hooks -> ``StepMetricsEngine`` per step -> ``BatchRecorder`` per
batch -> ``evolens.io.store.TraceWriter``. ``Tracer`` is the seam other engines plug into.

Lenses: ``lens`` (the logit lens, normed or raw), ``tuned_lens`` (per-layer affine translators, the
``tuned-lens`` file format), ``lens_spec`` (``--lens`` strings -> a ``Lens``); training a tuned lens on the
model's own generations: ``lens_data`` (collect states) and ``lens_training`` (``evolens train-lens``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evolens.tracing.tracer import Tracer, TraceResult, TraceSettings, trace

__all__ = ["TraceResult", "TraceSettings", "Tracer", "trace"]


def __getattr__(name: str) -> Any:
    """The engine's names, imported on first use (config validation reads ``lens_spec`` without torch)."""
    if name not in __all__:
        raise AttributeError(f"module 'evolens.tracing' has no attribute '{name}'")
    from evolens.tracing import tracer

    value = getattr(tracer, name)
    globals()[name] = value
    return value
