"""One vocabulary for named things: the trace's per-layer metrics (names, shapes, units, labels), the
stages and token kinds with their labels and colours, and how layers and tokens are written.

It imports nothing from evolens, so every package, from the trace store up to the report, reads the same
definitions (docs/architecture.md).
"""

from evolens.vocabulary.look import (
    KIND_COLORS,
    KIND_LABELS,
    SERIES_COLORS,
    TOKEN_KINDS,
    WHITESPACE,
    visible_token,
)
from evolens.vocabulary.metrics import (
    ATTENTION_SHARES,
    EXPLORER,
    HEATMAP,
    IMAGE_EFFECT,
    LAYER_STATISTICS,
    LENS_STORED,
    METRICS,
    OVERVIEW,
    STORED,
    Metric,
    Per,
    metric,
    names,
)
from evolens.vocabulary.stages import (
    KEY_LAYER_COLORS,
    STAGE_ALPHA,
    STAGE_COLORS,
    STAGE_LABELS,
    STAGE_NAMES,
    format_layers,
    layer_span,
    stage_label,
)

__all__ = [
    "ATTENTION_SHARES",
    "EXPLORER",
    "HEATMAP",
    "IMAGE_EFFECT",
    "KEY_LAYER_COLORS",
    "KIND_COLORS",
    "KIND_LABELS",
    "LAYER_STATISTICS",
    "LENS_STORED",
    "METRICS",
    "OVERVIEW",
    "SERIES_COLORS",
    "STAGE_ALPHA",
    "STAGE_COLORS",
    "STAGE_LABELS",
    "STAGE_NAMES",
    "STORED",
    "TOKEN_KINDS",
    "WHITESPACE",
    "Metric",
    "Per",
    "format_layers",
    "layer_span",
    "metric",
    "names",
    "stage_label",
    "visible_token",
]
