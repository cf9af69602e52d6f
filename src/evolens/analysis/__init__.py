"""Analyses of a trace directory: stages, per-layer statistics, single-token views, feature maps.

Everything here reads a trace written by ``evolens trace`` and never needs the model.
"""

from evolens.analysis.stages import Stage, StageConfig, StageResult, detect_curves, detect_stages
from evolens.io.trace import Trace, load_trace

__all__ = [
    "Stage",
    "StageConfig",
    "StageResult",
    "Trace",
    "analyze",
    "detect_curves",
    "detect_stages",
    "load_trace",
]


def __getattr__(name: str):
    if name == "analyze":  # figures pull in matplotlib; only load them when asked
        from evolens.pipeline.analyze import analyze

        return analyze
    raise AttributeError(name)
