"""The analyses on a real trace: SmolLM2-135M (the demo's decoder), text-only prompts, traced by evolens."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from evolens.analysis.distribution import layer_statistics
from evolens.analysis.single_token import heatmap_data, lens_grid
from evolens.io.trace import load_trace
from evolens.models import LoadedModel
from evolens.pipeline.analyze import AnalyzeOptions, analyze

pytestmark = pytest.mark.slow

PROMPTS = ["What is the color of the sky on a clear day?", "What is the color of grass?", "Name a red fruit."]


@pytest.fixture(scope="module")
def real_trace_dir(demo_text: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evolens.tracing.tracer import trace

    out = tmp_path_factory.mktemp("real") / "trace"
    result = trace(demo_text, None, PROMPTS, out=out, max_new_tokens=6, batch_size=3, keep_hidden=True)
    assert result.ok
    return out


def test_greedy_last_layer_is_the_emitted_token(real_trace_dir: Path) -> None:
    trace = load_trace(real_trace_dir)
    assert trace.n_layers == 30 and len(trace.samples) == 3
    top1 = layer_statistics(trace, n_boot=20, metrics=("top1",))["top1"]["all"].mean
    assert top1[-1] == 1.0
    grid = lens_grid(trace, trace.sample_ids[0])
    rows = trace.rows_of(trace.sample_ids[0])
    np.testing.assert_array_equal(grid.top_ids[-1], trace.steps["token_id"].to_numpy()[rows])
    np.testing.assert_allclose(
        heatmap_data(trace, trace.sample_ids[1]).values,
        trace.matrix("jsd_next")[trace.rows_of(trace.sample_ids[1])],
    )
    assert trace.matrix("jsd_next").max() <= np.log(2) + 1e-6


def test_analyze_a_real_trace(real_trace_dir: Path, tmp_path: Path) -> None:
    options = AnalyzeOptions(n_boot=50, projections=("pca",), answer=0)
    result = analyze(real_trace_dir, tmp_path / "analysis", options)
    summary = json.loads((tmp_path / "analysis" / "summary.json").read_text())
    assert summary["n_layers"] == 30
    legacy = summary["legacy_stages"]
    assert legacy[0]["start"] == 0 and legacy[-1]["end"] == 30
    assert all(b["start"] == a["end"] + 1 for a, b in itertools.pairwise(legacy))
    found = summary["stages"]  # the search leaves the first transition out: its segments cover layers 2..30
    assert found[0]["start"] == 2 and found[-1]["end"] == 30
    assert all(b["start"] == a["end"] + 1 for a, b in itertools.pairwise(found))
    assert all(0 <= stage["found_share"] <= 1 for stage in found)
    assert summary["stage_search"]["verdicts"]
    assert summary["critical_layer"] == result.stages.critical_layer
    trace = load_trace(real_trace_dir)
    assert len(summary["tokens"]) == trace.n_tokens
    first = trace.sample_ids[0]
    assert summary["tokens"][0]["sample_id"] == first
    view = json.loads((tmp_path / "analysis" / summary["features"]["single"][first][0]).read_text())
    assert len(view["x"]) == len(trace.rows_of(first)) * 30  # every step at layers 1..30
    assert summary["features"]["answer"] == []  # every prompt differs: no question asked of several inputs
