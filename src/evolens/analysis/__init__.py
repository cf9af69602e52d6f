"""Analyses of a trace directory: stages, per-layer statistics, single-token views, feature maps.

Everything here computes from a trace (``evolens.io.trace.Trace``) and never needs the model or draws: the
figures are ``evolens.plots``, the ``analyze`` command is ``evolens.pipeline.analyze``.
"""

from evolens.analysis.stages import Stage, StageConfig, StageResult, detect_curves, detect_stages
from evolens.io.trace import Trace, load_trace

__all__ = [
    "Stage",
    "StageConfig",
    "StageResult",
    "Trace",
    "detect_curves",
    "detect_stages",
    "load_trace",
]
