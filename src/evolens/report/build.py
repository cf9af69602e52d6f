"""``report.html``: one self-contained page (plotly.js, styles, script and data inlined) that works offline.

``collect`` gathers everything the page shows into one JSON-able dict; ``render`` pours it into
``template.html`` with ``report.css``, ``report.js`` and the plotly.js bundled with the installed plotly
package; ``build_report`` does both and writes the file atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evolens.io import atomic
from evolens.io.trace import Trace, load_trace
from evolens.report.experiments import experiment_entry, experiment_notes
from evolens.report.features import feature_views
from evolens.report.findings import findings_notes, image_effect_section, probes_section
from evolens.report.image_maps import image_maps_section
from evolens.report.samples import explorer_metrics, pick_samples, sample_entries
from evolens.report.sections import (
    figure_entries,
    layer_curves,
    read_json_file,
    stages_section,
    summary_notes,
)
from evolens.vocabulary import KEY_LAYER_COLORS, SERIES_COLORS, STAGE_ALPHA, STAGE_COLORS, WHITESPACE

PLACEHOLDER = re.compile(r"\{\{(TITLE|CSS|PLOTLY_JS|REPORT_JS|DATA)\}\}")
SCRIPTS = ("findings.js", "image_maps.js", "report.js")
"""The page's scripts, in order: section renderers register themselves (``window.evolensSections``), then
report.js draws every section, those included."""


@dataclass
class ReportInputs:
    """Where the report's material lies. Only ``trace_dir`` is required.

    Attributes:
        trace_dir: a trace dataset (docs/trace-format.md).
        analysis_dir: ``evolens analyze`` output (``summary.json``, figures, feature coordinates).
        experiments: title -> JSON file (e.g. {"Layer skipping": skip.json}); missing files are left out.
        run: what the run summary shows beyond the trace's meta.json (data, settings, versions, created;
            ``stages``: run.json's finished stages, whose ``seconds`` become the timings; ``notes``).
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
    experiments, notes = [], run_notes(inputs.run, summary)
    for title, path in inputs.experiments.items():
        value = read_json_file(path)
        entry = experiment_entry(title, path, value)
        if entry is not None:
            experiments.append(entry)
            notes += [{"source": title, "text": text} for text in experiment_notes(value)]
    return {
        "title": inputs.title or f"evolens: {trace.meta.get('model', 'model')}",
        "style": {
            "stage_colors": STAGE_COLORS,
            "stage_alpha": STAGE_ALPHA,
            "key_layer_colors": KEY_LAYER_COLORS,
            "series_colors": SERIES_COLORS,
            "whitespace": WHITESPACE,
        },
        "run": run_summary(trace.meta, inputs.run, n_samples=len(trace.samples), n_tokens=trace.n_tokens),
        "n_layers": trace.n_layers,
        "stages": stages_section(summary, trace.n_layers),
        "curves": layer_curves(summary),
        "image_effect": image_effect_section(summary),
        "probes": probes_section(summary),
        "image_maps": image_maps_section(summary),
        "metrics": explorer_metrics(),
        "samples": samples,
        "n_samples_total": len(trace.samples),
        "vocab": token_strings(trace, summary, vocab),
        "features": feature_views(inputs.analysis_dir) if inputs.analysis_dir else [],
        "experiments": experiments,
        "figures": figure_entries(
            [*([inputs.analysis_dir] if inputs.analysis_dir else []), *inputs.figure_dirs]
        ),
        "failures": inputs.failures,
        "notes": notes,
    }


def run_notes(run: dict[str, Any], summary: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every note the run and the analysis recorded (what was capped, dropped or not measured)."""
    notes = [{"source": "run", "text": str(note)} for note in run.get("notes") or []]
    notes += [{"source": "analysis", "text": str(note)} for note in (summary or {}).get("notes") or []]
    notes += [{"source": "report", "text": note} for note in summary_notes(summary)]
    notes += [{"source": "report", "text": note} for note in findings_notes(summary)]
    return notes


def token_strings(trace: Trace, summary: dict[str, Any] | None, ids: Iterable[int]) -> dict[str, str]:
    """{"id": string} for ``ids``, ascending: summary.json's ``token_strings`` (the analysis looked them
    up), else what the trace itself names (``Trace.token_strings``), else "#id"."""
    analysed = (summary or {}).get("token_strings") or {}
    known = trace.token_strings()
    strings = {}
    for token_id in sorted(ids):
        key = str(token_id)
        strings[key] = analysed[key] if key in analysed else known.get(token_id, f"#{token_id}")
    return strings


def run_summary(meta: dict[str, Any], run: dict[str, Any], n_samples: int, n_tokens: int) -> dict[str, Any]:
    """Model, data, settings, versions and stage timings for the summary card (the run's values win over
    meta.json's)."""
    decoding = meta.get("decoding") or {}
    settings = {
        "lens": meta.get("lens"),
        "dtype": meta.get("dtype"),
        "top_k": meta.get("top_k"),
        **{k: v for k, v in decoding.items() if isinstance(v, str | int | float | bool)},
        "seed": meta.get("seed"),
        **(run.get("settings") or {}),
    }
    stages = run.get("stages") or {}
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
        "timings": [
            {"stage": str(name), "seconds": float(details["seconds"])}
            for name, details in stages.items()
            if isinstance(details, dict) and isinstance(details.get("seconds"), int | float)
        ],
        "config": run.get("config"),
    }


def render(data: dict[str, Any]) -> str:
    """The page's HTML with every asset inlined (no network access needed to view it)."""
    from plotly.offline import get_plotlyjs

    package = resources.files("evolens.report")
    payload = script_json(data)
    parts = {
        "TITLE": _escape_html(str(data["title"])),
        "CSS": package.joinpath("report.css").read_text(encoding="utf-8"),
        "PLOTLY_JS": get_plotlyjs(),
        "REPORT_JS": "\n".join(package.joinpath(name).read_text(encoding="utf-8") for name in SCRIPTS),
        "DATA": payload,
    }
    template = package.joinpath("template.html").read_text(encoding="utf-8")
    return PLACEHOLDER.sub(lambda match: parts[match.group(1)], template)


SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside an inline ``<script>``: no text can end the element or open a
    comment or CDATA section, because every ``<``, ``>`` and ``&`` is written as a \\u escape (the value
    parses back unchanged); U+2028/U+2029 are escaped as well."""
    return atomic.json_text(data, indent=None, sort_keys=False).translate(SCRIPT_ESCAPES)


def build_report(inputs: ReportInputs, out: Path) -> Path:
    """Collect, render and write ``out`` atomically; returns ``out``."""
    return atomic.write_text(Path(out), render(collect(inputs)))


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
