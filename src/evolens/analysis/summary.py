"""summary.json: the stages, their intervals and stability, per-token rows, per-layer statistics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evolens.analysis.stages import StageConfig, StageResult
from evolens.io.trace import Trace

SUMMARY_VERSION = 1


def json_ready(value: Any) -> Any:
    """Numpy scalars and arrays to Python, NaN and inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def frame_records(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts (missing values as None, integers kept as integers)."""
    records = []
    for record in frame.to_dict("records"):
        clean = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif (
                isinstance(value, float)
                and value.is_integer()
                and key.endswith(("layer", "layer_prob", "difference"))
            ):
                value = int(value)
            clean[key] = value
        records.append(json_ready(clean))
    return records


def build_summary(
    trace: Trace,
    stages: StageResult,
    config: StageConfig,
    intervals: dict,
    stability: dict,
    tokens: pd.DataFrame,
    token_overview: dict,
    distribution: dict,
    features: dict,
    figures: list[str],
) -> dict:
    """Assemble summary.json (schema in docs/analysis.md)."""
    return json_ready(
        {
            "summary_version": SUMMARY_VERSION,
            "trace": {
                "directory": str(trace.directory),
                "model": trace.meta.get("model"),
                "lens": trace.meta.get("lens"),
                "n_samples": len(trace.samples),
                "n_tokens": trace.n_tokens,
            },
            **stages.to_dict(),
            "detector": {**config.to_dict(), "min_stable_layers": config.min_stable_layers(trace.n_layers)},
            "confidence_intervals": intervals,
            "stability": stability,
            "per_token_summary": token_overview,
            "tokens": frame_records(tokens),
            "distribution": distribution,
            "features": features,
            "figures": figures,
        }
    )


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as JSON atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(json_ready(data), indent=1, allow_nan=False, ensure_ascii=False))
    os.replace(temporary, path)
    return path
