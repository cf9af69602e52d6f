"""The report shows what the analysis wrote (summary.json, feature views) and the trace's own tables: it
imports neither the analyses nor the figures nor matplotlib, directly, inside a function, or transitively."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import evolens
from tests.report.synthetic_run import write_synthetic_run

REPORT = Path(evolens.__file__).parent / "report"
MAY_NOT_IMPORT = ("matplotlib", "evolens.analysis", "evolens.plots")


def imported_names(tree: ast.AST) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (function-level included);
    ``from evolens import analysis`` counts as ``evolens.analysis``."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in MAY_NOT_IMPORT)]


def test_no_report_module_imports_analysis_plots_or_matplotlib() -> None:
    """Defect: the report recomputed per-layer statistics with ``evolens.analysis`` when summary.json lacked
    them, and imported matplotlib (through ``evolens.plots.style``) for a few colour constants."""
    offenders = {
        path.name: found
        for path in sorted(REPORT.glob("*.py"))
        if (found := forbidden(imported_names(ast.parse(path.read_text(encoding="utf-8")))))
    }
    assert not offenders, offenders


def test_the_import_check_sees_function_level_and_package_imports() -> None:
    added_back = "def f():\n    from evolens.analysis.distribution import layer_statistics\n"
    assert forbidden(imported_names(ast.parse(added_back))) == [
        "evolens.analysis.distribution",
        "evolens.analysis.distribution.layer_statistics",
    ]
    assert forbidden(imported_names(ast.parse("from evolens import plots\n"))) == ["evolens.plots"]
    assert forbidden(imported_names(ast.parse("import matplotlib.pyplot as plt\n"))) == ["matplotlib.pyplot"]
    assert forbidden(imported_names(ast.parse("from evolens.io.trace import Trace\n"))) == []


def test_collecting_a_report_loads_no_analysis_plots_or_matplotlib(tmp_path: Path) -> None:
    """The same, transitively: a fresh interpreter collects a report and lists the modules it loaded."""
    run = write_synthetic_run(tmp_path, n_samples=2)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from evolens.report import ReportInputs, collect\n"
        f"collect(ReportInputs(trace_dir=Path({str(run['trace'])!r}), "
        f"analysis_dir=Path({str(run['analysis'])!r})))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "evolens.report.build" in loaded
    assert not forbidden(loaded), forbidden(loaded)
