"""summary.json: the stages, their intervals and stability, per-token rows, per-layer statistics, and the
strings of the top-k tokens (everything the report shows besides the trace's own tables)."""

from __future__ import annotations

import math

import pandas as pd

from evolens.analysis.stages import StageConfig, StageResult
from evolens.io.atomic import json_ready
from evolens.io.trace import Trace

SUMMARY_VERSION = 2
"""2: adds ``token_strings`` (the report reads every string from summary.json, never the tokenizer)."""


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
    token_strings: dict[str, str],
) -> dict:
    """Assemble summary.json (schema in docs/analysis.md); ``token_strings``: {"id": string} of every
    top-k token id of the trace."""
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
            "token_strings": token_strings,
        }
    )
