"""``report.html``: one self-contained page (plotly.js, styles, script and data inlined) that works offline.

``collect`` gathers everything the page shows into one JSON-able dict; ``render`` pours it into
``template.html`` with ``report.css``, ``report.js`` and the plotly.js bundled with the installed plotly
package; ``build_report`` does both and writes the file atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evolens.analysis.vocabulary import TokenStrings
from evolens.io import atomic
from evolens.io.trace import load_trace
from evolens.report.samples import pick_samples, sample_entries
from evolens.report.sections import (
    figure_entries,
    layer_curves,
    read_json_file,
    stages_section,
    tables_from_json,
)

PLACEHOLDER = re.compile(r"\{\{(TITLE|CSS|PLOTLY_JS|REPORT_JS|DATA)\}\}")


@dataclass
class ReportInputs:
    """Where the report's material lies. Only ``trace_dir`` is required.

    Attributes:
        trace_dir: a trace dataset (docs/trace-format.md).
        analysis_dir: ``evolens analyze`` output (``summary.json``, figures, feature coordinates).
        experiments: title -> JSON file (e.g. {"Layer skipping": skip.json}); missing files are left out.
        run: what the run summary shows beyond the trace's meta.json (data, settings, versions, created).
        failures: inputs that failed ({"sample_id", "image", "error"}), listed in the report.
        max_samples: samples whose token-by-layer detail is embedded.
        figure_dirs: more folders whose PNG figures the report shows (e.g. the lens comparison's).
    """

    trace_dir: Path
    analysis_dir: Path | None = None
    experiments: dict[str, Path] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    max_samples: int = 60
    title: str | None = None
    figure_dirs: list[Path] = field(default_factory=list)


def collect(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (see docs/report.md for the fields)."""
    trace = load_trace(inputs.trace_dir)
    summary = read_json_file(inputs.analysis_dir / "summary.json") if inputs.analysis_dir else None
    vocab: dict[int, str] = {}
    samples = sample_entries(trace, pick_samples(trace, inputs.max_samples), vocab)
    strings = TokenStrings(trace)
    tables = []
    for title, path in inputs.experiments.items():
        tables.extend(tables_from_json(title, read_json_file(path)))
    from evolens.report.features import feature_views

    return {
        "title": inputs.title or f"evolens: {trace.meta.get('model', 'model')}",
        "run": run_summary(trace.meta, inputs.run, n_samples=len(trace.samples), n_tokens=trace.n_tokens),
        "n_layers": trace.n_layers,
        "stages": stages_section(summary, trace.n_layers),
        "curves": layer_curves(trace),
        "samples": samples,
        "n_samples_total": len(trace.samples),
        "vocab": {str(i): strings(i) for i in sorted(vocab)},
        "features": feature_views(inputs.analysis_dir) if inputs.analysis_dir else [],
        "tables": tables,
        "figures": figure_entries(
            [*([inputs.analysis_dir] if inputs.analysis_dir else []), *inputs.figure_dirs]
        ),
        "failures": inputs.failures,
    }


def run_summary(meta: dict[str, Any], run: dict[str, Any], n_samples: int, n_tokens: int) -> dict[str, Any]:
    """Model, data, settings and versions for the summary card (the run's values win over meta.json's)."""
    decoding = meta.get("decoding") or {}
    settings = {
        "lens": meta.get("lens"),
        "dtype": meta.get("dtype"),
        "top_k": meta.get("top_k"),
        **{k: v for k, v in decoding.items() if isinstance(v, str | int | float | bool)},
        "seed": meta.get("seed"),
        **(run.get("settings") or {}),
    }
    return {
        "model": run.get("model") or meta.get("model"),
        "revision": meta.get("revision"),
        "data": run.get("data"),
        "created": run.get("created") or meta.get("created"),
        "n_layers": meta.get("n_layers"),
        "vocab_size": meta.get("vocab_size"),
        "n_samples": n_samples,
        "n_tokens": n_tokens,
        "n_failed": run.get("n_failed", 0),
        "settings": {k: v for k, v in settings.items() if v is not None},
        "versions": {**(meta.get("versions") or {}), **(run.get("versions") or {})},
        "config": run.get("config"),
    }


def render(data: dict[str, Any]) -> str:
    """The page's HTML with every asset inlined (no network access needed to view it)."""
    from plotly.offline import get_plotlyjs

    package = resources.files("evolens.report")
    # "</" inside inline JSON would end the <script> element early
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    parts = {
        "TITLE": _escape_html(str(data["title"])),
        "CSS": package.joinpath("report.css").read_text(encoding="utf-8"),
        "PLOTLY_JS": get_plotlyjs(),
        "REPORT_JS": package.joinpath("report.js").read_text(encoding="utf-8"),
        "DATA": payload,
    }
    template = package.joinpath("template.html").read_text(encoding="utf-8")
    return PLACEHOLDER.sub(lambda match: parts[match.group(1)], template)


def build_report(inputs: ReportInputs, out: Path) -> Path:
    """Collect, render and write ``out`` atomically; returns ``out``."""
    return atomic.write_text(Path(out), render(collect(inputs)))


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
