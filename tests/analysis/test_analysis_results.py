"""``analyze`` is compute -> write -> draw: ``analysis.results.analyze_trace`` computes every number (no
matplotlib), ``pipeline.analyze`` writes summary.json and the feature views, ``plots.draw`` draws."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from evolens.analysis.options import AnalyzeOptions
from evolens.analysis.results import analyze_trace
from evolens.io.trace import load_trace
from tests.analysis.conftest import VOCAB, ExactTrace

FAST = AnalyzeOptions(n_boot=20, projections=("pca",), answer=["red"])


def test_the_written_summary_is_the_computed_one_and_lists_what_was_drawn(
    planted_trace_dir: Path, tmp_path: Path
) -> None:
    from evolens.pipeline.analyze import analyze

    computed = analyze_trace(load_trace(planted_trace_dir), FAST)
    result = analyze(planted_trace_dir, tmp_path, FAST)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(computed.summary))
    planned = [file for figure in computed.figures for file in figure.files]
    assert written["figures"] == planned == [str(p.relative_to(tmp_path)) for p in result.figures]
    assert all((tmp_path / file).stat().st_size > 0 for file in planned)
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "features").glob("*.json")) == sorted(
        computed.views
    )
    for relative, view in computed.views.items():
        assert json.loads((tmp_path / relative).read_text()) == json.loads(json.dumps(view))


def test_summary_names_every_top_k_token(exact_trace: ExactTrace) -> None:
    """The report reads token strings from summary.json (it never loads a tokenizer)."""
    summary = analyze_trace(exact_trace.trace, AnalyzeOptions(figures=False, n_boot=20)).summary
    ids, _ = exact_trace.trace.topk()
    assert summary["summary_version"] == 2
    assert summary["token_strings"] == {str(i): VOCAB[i] for i in sorted(set(ids.ravel().tolist()))}


def test_computing_an_analysis_loads_no_matplotlib(planted_trace_dir: Path) -> None:
    script = (
        "import sys\n"
        "from evolens.analysis.options import AnalyzeOptions\n"
        "from evolens.analysis.results import analyze_trace\n"
        "from evolens.io.trace import load_trace\n"
        f"result = analyze_trace(load_trace({str(planted_trace_dir)!r}), "
        "AnalyzeOptions(n_boot=20, projections=('pca',), answer=['red']))\n"
        "assert result.figures and result.views\n"
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'evolens.plots'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
