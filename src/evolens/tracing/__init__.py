"""The trace engine: lenses, divergence metrics, the fused step engine, the per-row recorder and ``trace()``.

generate() with ``evolens.models.capture`` hooks -> ``StepMetricsEngine`` per step -> ``BatchRecorder`` per
batch -> ``evolens.io.store.TraceWriter``. ``Tracer`` is the seam other engines plug into.
"""

from evolens.tracing.tracer import Tracer, TraceResult, TraceSettings, trace

__all__ = ["TraceResult", "TraceSettings", "Tracer", "trace"]
