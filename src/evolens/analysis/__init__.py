"""Analyses of a trace directory: stages, per-layer statistics, single-token views, feature maps.

Everything here computes from a trace (``evolens.io.trace.Trace``) and never needs the model or draws:
``results.analyze_trace`` computes all that ``analyze`` writes (summary.json, feature views, the figures
to draw), ``evolens.plots`` draws the figures and ``evolens.pipeline.analyze`` writes it all.
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
