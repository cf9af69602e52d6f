"""The stages of ``evolens run``, each a thin call into the module that does the work.

data -> ``evolens.data.sources`` (the selected rows, written as ``OUT/manifest.jsonl``)
trace -> ``evolens.tracing.tracer`` (resumes by itself: finished samples are kept)
nulls -> ``evolens.pipeline.nulls`` (the trace's tokens scored under each null condition, resumable)
analyze -> ``evolens.pipeline.analyze`` (into a staged folder, renamed whole when complete)
skip, causal, hallucination -> ``evolens.interventions`` / ``evolens.eval`` (staged folders too)
lens_compare -> the same samples traced with a second lens, then ``evolens.pipeline.compare``
report -> ``evolens.report.build_report`` (one file, written atomically)
"""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

import evolens
from evolens.analysis import detect_stages
from evolens.data.resolve import Sample, open_images, resolve_samples
from evolens.data.sources import load_rows, read_manifest
from evolens.errors import EvolensError, InputError
from evolens.eval.trace_metrics import write_hallucination
from evolens.interventions.skip_run import SkipPlan, run_skip
from evolens.io import atomic
from evolens.io.store import finished_sample_ids
from evolens.io.store import read_failures as read_trace_failures
from evolens.io.trace import load_trace
from evolens.pipeline.analyze import AnalyzeOptions, analyze
from evolens.pipeline.causal import causal_stage
from evolens.pipeline.compare import compare_traces
from evolens.pipeline.context import TRACE_IDENTITY, RunContext, Stage
from evolens.pipeline.inputs import compare, manifest_lines, without_line_numbers
from evolens.pipeline.nulls import null_folders, nulls_stage
from evolens.pipeline.record import RunLayout
from evolens.report import ReportInputs, build_report
from evolens.tracing.engines import TraceJob, TraceResult, engine_for

ALL_SECTIONS = (
    *TRACE_IDENTITY,
    "nulls",
    "analyze",
    "skip",
    "causal",
    "hallucination",
    "lens_compare",
    "report",
)


def data_stage(context: RunContext) -> dict[str, Any]:
    """Select the samples (with each image's SHA-256), say what changed since the last run, and write them
    as the run's manifest."""
    layout = context.layout
    rows = load_rows(context.config.data, layout.root / "data")
    lines = manifest_lines(rows, layout.root / "data" / "file_hashes.json")
    previous = (
        [without_line_numbers(line) for line in read_manifest(layout.manifest)]
        if layout.manifest.is_file()
        else None
    )
    changes = compare(previous, lines) if previous is not None else None
    if previous != lines:  # new inputs, or the same ones at new paths (a moved run folder)
        atomic.write_jsonl(layout.manifest, lines)
    context.say(f"data: {len(rows)} samples ({describe_data(context)})")
    if changes:
        context.say(f"data: since the last run: {changes.describe()}; the stages after this one run again")
    return {"samples": len(rows), **({"changes": changes.to_dict()} if changes else {})}


def trace_stage(context: RunContext) -> dict[str, Any]:
    """Trace every sample of the manifest not traced yet; failed inputs are recorded, not fatal."""
    result = _trace_manifest(context, context.layout.trace, context.config.trace.lens, exclusive=True)
    finished = finished_sample_ids(context.layout.trace)
    failures = read_trace_failures(context.layout.trace)
    if not finished:
        first = f"; first: {failures[0].get('error')}" if failures else ""
        raise InputError(f"every input failed ({len(failures)}){first}")
    retraced = f" ({len(result.retraced)} because their input changed)" if result.retraced else ""
    removed = f", {len(result.removed)} removed (no longer in the inputs)" if result.removed else ""
    context.say(
        f"trace: {len(result.traced)} traced now{retraced}, {len(result.skipped)} already done{removed}"
    )
    return {"samples": len(finished), "failed": len(failures)}


def _trace_manifest(
    context: RunContext, out: Any, lens: str, keep_hidden: bool | None = None, exclusive: bool = False
) -> TraceResult:
    """``trace`` of the run's manifest with the run's ``TraceSpec`` (``lens`` and ``keep_hidden`` replaced)
    and engine, into ``out``. The model the run loaded for its other stages is reused by an engine that
    traces in this process; the Ray engine's actors load it by name."""
    config = context.config
    hidden = config.trace.keep_hidden if keep_hidden is None else keep_hidden
    spec = config.trace.model_copy(update={"lens": lens, "keep_hidden": bool(hidden)})
    job = TraceJob(
        model=config.model,
        samples=resolve_samples(context.layout.manifest),
        out=Path(out),
        spec=spec,
        device=config.device,
        dtype=config.dtype,
        progress=not context.quiet,
        exclusive=exclusive,
        loaded=lambda: context.model,
    )
    return engine_for(config.engine, config.ray).run(job)


def lens_compare_stage(context: RunContext) -> dict[str, Any]:
    """The manifest traced again with the second lens (same decoding, so the same tokens), then the
    stages, critical and mutation layers and KL-to-final of both lenses side by side."""
    config, layout = context.config, context.layout
    folder = layout.lens_compare
    second, spec_file = folder / "trace", folder / "lens.json"
    if second.exists() and atomic.read_json(spec_file) != {"lens": config.lens_compare.lens}:
        import shutil

        shutil.rmtree(second)  # traced with another second lens: start that trace over
    atomic.write_json(spec_file, {"lens": config.lens_compare.lens})
    _trace_manifest(context, second, config.lens_compare.lens, keep_hidden=False, exclusive=True)
    labels = [f"lens {config.trace.lens}", f"lens {config.lens_compare.lens}"]
    result = compare_traces(
        [layout.trace, second], labels, folder / "compare", n_boot=config.analyze.n_boot, seed=0
    )
    context.say(f"lens_compare: {'; '.join(_stage_line(row) for row in result['stages'])}")
    return {"same_inputs": result["same_inputs"]}


def _stage_line(row: dict[str, Any]) -> str:
    return (
        f"{row['label']}: critical {row['critical_layer']} {row['critical_layer_ci'] or ''}, "
        f"mutation {row['mutation_layer']} {row['mutation_layer_ci'] or ''}"
    )


def analyze_stage(context: RunContext) -> dict[str, Any]:
    """Stages, statistics, figures and feature views of the trace, into ``OUT/analysis``."""
    settings = context.config.analyze
    options = AnalyzeOptions(
        samples=first_sample_per_prompt(context.layout),
        answer=settings.answer,
        projections=tuple(settings.projections),
        features=bool(settings.projections) or context.config.trace.keep_hidden is True,
        n_boot=settings.n_boot,
        max_answer_images=settings.max_answer_images,
    )
    with atomic.staged_directory(context.layout.analysis) as staging:
        result = analyze(context.layout.trace, staging, options, nulls=null_folders(context))
    for note in result.notes:
        context.say(f"analyze: {note}")
    return {"figures": len(result.figures)}


def skip_stage(context: RunContext) -> dict[str, Any]:
    """Generate again with layers skipped (the detected stages, or a given range) and compare."""
    config, loaded = context.config, context.model
    plan = SkipPlan(
        config.skip.plan,
        config.skip.random_seeds,
        config.trace.max_new_tokens,
        config.trace.batch_size,
        context.layout.trace,
    )
    try:
        conditions = plan.conditions(loaded.n_layers)
    except EvolensError as exc:  # e.g. no critical layer: the run goes on, the report says why
        context.say(f"skip: not run: {exc}")
        detected = detect_stages(load_trace(context.layout.trace))
        with atomic.staged_directory(context.layout.skip) as staging:
            atomic.write_json(staging / "skip.json", {"not run": str(exc), "stages": detected.to_dict()})
        return {"conditions": 0}
    samples, failures = traced_samples(context, config.skip.limit)
    for failure in failures:
        context.say(f"skip: left out {failure}")
    with atomic.staged_directory(context.layout.skip) as staging:
        run_skip(
            loaded,
            samples,
            failures,
            plan,
            staging,
            lambda message: context.say(f"skip: {message}"),
            conditions,
        )
    return {"conditions": len(conditions[0]), "samples": len(samples)}


def hallucination_stage(context: RunContext) -> dict[str, Any]:
    """Hallucination scores from the ground truth the samples carry (shapes world, COCO objects)."""
    with atomic.staged_directory(context.layout.hallucination) as staging:
        write_hallucination(context.layout.trace, staging, n_boot=context.config.analyze.n_boot)
    return {}


def report_stage(context: RunContext) -> dict[str, Any]:
    """``OUT/report.html`` from everything the run produced."""
    layout, config = context.layout, context.config
    experiments = {}
    if config.skip.enabled:
        experiments["Layer skipping"] = layout.skip / "skip.json"
    if config.causal.enabled:
        experiments["Causal tests by layer window"] = layout.causal / "causal.json"
    if config.hallucination.enabled:
        experiments["Hallucination"] = layout.hallucination / "hallucination.json"
    if config.lens_compare.enabled:
        experiments["Lens comparison"] = layout.lens_compare / "compare" / "compare.json"
    failures = read_failures(layout)
    inputs = ReportInputs(
        trace_dir=layout.trace,
        analysis_dir=layout.analysis if config.analyze.enabled else None,
        experiments=experiments,
        figure_dirs=[
            *([layout.lens_compare / "compare"] if config.lens_compare.enabled else []),
            *([layout.causal] if config.causal.enabled else []),
        ],
        run=run_info(context, n_failed=len(failures)),
        failures=failures,
        max_samples=config.report.max_samples,
        title=config.report.title,
    )
    build_report(inputs, layout.report)
    return {}


STAGES: tuple[Stage, ...] = (
    Stage("data", ("data",), lambda out: out.manifest, data_stage, always=True),
    Stage("trace", TRACE_IDENTITY, lambda out: out.trace, trace_stage),
    Stage(
        "nulls",
        (*TRACE_IDENTITY, "nulls"),
        lambda out: out.nulls,
        nulls_stage,
        lambda config: config.nulls.enabled,
    ),
    Stage(
        "analyze",
        (*TRACE_IDENTITY, "nulls", "analyze"),
        lambda out: out.analysis,
        analyze_stage,
        lambda config: config.analyze.enabled,
    ),
    Stage(
        "skip",
        (*TRACE_IDENTITY, "analyze", "skip"),
        lambda out: out.skip,
        skip_stage,
        lambda config: config.skip.enabled,
    ),
    Stage(
        "causal",
        (*TRACE_IDENTITY, "analyze", "causal"),
        lambda out: out.causal / "causal.json",
        causal_stage,
        lambda config: config.causal.enabled,
    ),
    Stage(
        "hallucination",
        (*TRACE_IDENTITY, "analyze", "hallucination"),
        lambda out: out.hallucination,
        hallucination_stage,
        lambda config: config.hallucination.enabled,
    ),
    Stage(
        "lens_compare",
        (*TRACE_IDENTITY, "analyze", "lens_compare"),
        lambda out: out.lens_compare / "compare" / "compare.json",
        lens_compare_stage,
        lambda config: config.lens_compare.enabled,
    ),
    Stage("report", ALL_SECTIONS, lambda out: out.report, report_stage, lambda config: config.report.enabled),
)


def read_failures(layout: RunLayout) -> list[dict[str, Any]]:
    """Inputs whose latest trace attempt failed: {"sample_id", "image", "error"} each."""
    return read_trace_failures(layout.trace) if layout.trace.is_dir() else []


def traced_samples(context: RunContext, limit: int | None) -> tuple[list[Sample], list[str]]:
    """The traced samples (the first ``limit`` of them) whose images can be read, for experiments that
    generate again, and one "id: error" line for each that could not be read now."""
    finished = finished_sample_ids(context.layout.trace)
    samples = [s for s in resolve_samples(context.layout.manifest) if s.sample_id in finished][:limit]
    readable, _, failures = open_images(samples, context.model.adapter.vision)
    return readable, [f"{failure['sample_id']}: {failure['error']}" for failure in failures]


def first_sample_per_prompt(layout: RunLayout, at_most: int = 3) -> list[str] | None:
    """The first finished sample of each prompt (for the single-sample figures), None if unknown."""
    finished = finished_sample_ids(layout.trace)
    chosen: dict[str, str] = {}
    for line in read_manifest(layout.manifest):
        if line["id"] in finished:
            chosen.setdefault(str(line["prompt"]), str(line["id"]))
    return list(chosen.values())[:at_most] or None


def describe_data(context: RunContext) -> str:
    """'shapes world, seeds 0-11' / 'folder /data/imgs' / 'coco /val2014 (instances.json)' ..."""
    data = context.config.data
    where = "" if data.path is None else f" {data.path}"
    extra = "" if data.annotations is None else f" ({data.annotations.name})"
    selection = []
    if data.limit is not None:
        selection.append(f"limit {data.limit}")
    if data.shuffle:
        selection.append(f"shuffled, seed {data.seed}")
    tail = f", {', '.join(selection)}" if selection else ""
    return f"{data.source}{where}{extra}{tail}"


def run_info(context: RunContext, n_failed: int) -> dict[str, Any]:
    """What the report's run summary shows beyond the trace's own metadata."""
    config = context.config
    prompts = sorted({str(line["prompt"]) for line in _manifest_lines(context.layout)})
    return {
        "model": config.model,
        "data": f"{describe_data(context)}; prompts: " + " | ".join(prompts),
        "created": context.record.created,
        "stages": context.record.data["stages"],  # the finished stages, with their durations
        "n_failed": n_failed,
        "config": config.to_yaml(),
        "settings": {"max_new_tokens": config.trace.max_new_tokens, "batch_size": config.trace.batch_size},
        "versions": {
            "evolens": evolens.__version__,
            "torch": version("torch"),
            "transformers": version("transformers"),
            "plotly": version("plotly"),
            "python": platform.python_version(),
        },
    }


def _manifest_lines(layout: RunLayout) -> list[dict[str, Any]]:
    return read_manifest(layout.manifest)
