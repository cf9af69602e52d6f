"""The stages of ``evolens run``, each a thin call into the module that does the work.

data -> ``evolens.data.sources`` (the selected rows, written as ``OUT/manifest.jsonl``)
trace -> ``evolens.tracing.tracer`` (resumes by itself: finished samples are kept)
analyze -> ``evolens.analysis.analyze`` (into a staged folder, renamed whole when complete)
skip, hallucination -> ``evolens.interventions`` / ``evolens.eval`` (staged folders too)
lens_compare -> the same samples traced with a second lens, then ``evolens.analysis.compare``
report -> ``evolens.report.build_report`` (one file, written atomically)
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from evolens.errors import EvolensError, InputError
from evolens.io import atomic
from evolens.pipeline.record import RunLayout
from evolens.pipeline.run import TRACE_IDENTITY, Stage

if TYPE_CHECKING:
    from evolens.pipeline.run import RunContext

ALL_SECTIONS = (*TRACE_IDENTITY, "analyze", "skip", "hallucination", "lens_compare", "report")


def data_stage(context: RunContext) -> dict[str, Any]:
    """Select the samples and write them as the run's manifest."""
    from evolens.data.sources import load_rows, manifest_text

    rows = load_rows(context.config.data, context.layout.root / "data")
    atomic.write_text(context.layout.manifest, manifest_text(rows))
    context.say(f"data: {len(rows)} samples ({describe_data(context)})")
    return {"samples": len(rows)}


def trace_stage(context: RunContext) -> dict[str, Any]:
    """Trace every sample of the manifest not traced yet; failed inputs are recorded, not fatal."""
    from evolens.io.store import finished_sample_ids, read_failures

    result = _trace_manifest(context, context.layout.trace, context.config.trace.lens)
    finished = finished_sample_ids(context.layout.trace)
    failures = read_failures(context.layout.trace)
    if not finished:
        first = f"; first: {failures[0].get('error')}" if failures else ""
        raise InputError(f"every input failed ({len(failures)}){first}")
    context.say(f"trace: {len(result.traced)} traced now, {len(result.skipped)} already done")
    return {"samples": len(finished), "failed": len(failures)}


def _trace_manifest(context: RunContext, out: Any, lens: str, keep_hidden: bool | None = None) -> Any:
    """``trace`` of the run's manifest with the run's trace settings and ``lens``, into ``out``."""
    from evolens.tracing.tracer import trace

    settings = context.config.trace
    return trace(
        context.model,
        context.layout.manifest,
        out=out,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        lens=lens,
        top_k=settings.top_k,
        keep_hidden=settings.keep_hidden if keep_hidden is None else keep_hidden,
        do_sample=settings.do_sample,
        temperature=settings.temperature,
        seed=settings.seed,
        progress=not context.quiet,
    )


def lens_compare_stage(context: RunContext) -> dict[str, Any]:
    """The manifest traced again with the second lens (same decoding, so the same tokens), then the
    stages, critical and mutation layers and KL-to-final of both lenses side by side."""
    from evolens.analysis.compare import compare_traces

    config, layout = context.config, context.layout
    folder = layout.lens_compare
    second, spec_file = folder / "trace", folder / "lens.json"
    if second.exists() and atomic.read_json(spec_file) != {"lens": config.lens_compare.lens}:
        import shutil

        shutil.rmtree(second)  # traced with another second lens: start that trace over
    atomic.write_json(spec_file, {"lens": config.lens_compare.lens})
    _trace_manifest(context, second, config.lens_compare.lens, keep_hidden=False)
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
    from evolens.pipeline.analyze import AnalyzeOptions, analyze

    options = AnalyzeOptions(
        samples=first_sample_per_prompt(context.layout), answer=context.config.analyze.answer
    )
    with atomic.staged_directory(context.layout.analysis) as staging:
        result = analyze(context.layout.trace, staging, options)
    for note in result.notes:
        context.say(f"analyze: {note}")
    return {"figures": len(result.figures)}


def skip_stage(context: RunContext) -> dict[str, Any]:
    """Generate again with layers skipped (the detected stages, or a given range) and compare."""
    from evolens.analysis import detect_stages, load_trace
    from evolens.interventions.experiments import custom_conditions, run_experiment, stage_conditions
    from evolens.interventions.plan import LayerPlan
    from evolens.interventions.report import skip_figure, skip_record, write_skip_json

    config, loaded = context.config, context.model
    seeds = list(range(config.skip.random_seeds))
    stages = None
    if config.skip.plan == "stages":
        detected = detect_stages(load_trace(context.layout.trace))
        try:
            conditions, stages = stage_conditions(detected, seeds), detected.to_dict()
        except EvolensError as exc:  # e.g. no critical layer: the run goes on, the report says why
            context.say(f"skip: not run: {exc}")
            with atomic.staged_directory(context.layout.skip) as staging:
                atomic.write_json(staging / "skip.json", {"not run": str(exc), "stages": detected.to_dict()})
            return {"conditions": 0}
    else:
        conditions = custom_conditions(LayerPlan.parse(config.skip.plan, loaded.n_layers), seeds)
    samples = prompted_samples(context, config.skip.limit)
    summaries = run_experiment(
        loaded,
        samples,
        conditions,
        config.trace.max_new_tokens,
        config.trace.batch_size,
        progress=lambda message: context.say(f"skip: {message}"),
    )
    settings = {
        "model": config.model,
        "n_layers": loaded.n_layers,
        "max_new_tokens": config.trace.max_new_tokens,
        "n_samples": len(samples),
        "random_seeds": seeds,
    }
    with atomic.staged_directory(context.layout.skip) as staging:
        write_skip_json(staging / "skip.json", skip_record(summaries, samples, settings, stages))
        skip_figure(atomic.read_json(staging / "skip.json"), staging / "skip")
    return {"conditions": len(conditions), "samples": len(samples)}


def hallucination_stage(context: RunContext) -> dict[str, Any]:
    """Hallucination scores from the ground truth the samples carry (shapes world, COCO objects)."""
    from evolens.eval.trace_metrics import write_hallucination

    with atomic.staged_directory(context.layout.hallucination) as staging:
        write_hallucination(context.layout.trace, staging, n_boot=context.config.analyze.n_boot)
    return {}


def report_stage(context: RunContext) -> dict[str, Any]:
    """``OUT/report.html`` from everything the run produced."""
    from evolens.report import ReportInputs, build_report

    layout, config = context.layout, context.config
    experiments = {}
    if config.skip.enabled:
        experiments["Layer skipping"] = layout.skip / "skip.json"
    if config.hallucination.enabled:
        experiments["Hallucination"] = layout.hallucination / "hallucination.json"
    if config.lens_compare.enabled:
        experiments["Lens comparison"] = layout.lens_compare / "compare" / "compare.json"
    failures = read_failures(layout)
    inputs = ReportInputs(
        trace_dir=layout.trace,
        analysis_dir=layout.analysis if config.analyze.enabled else None,
        experiments=experiments,
        figure_dirs=[layout.lens_compare / "compare"] if config.lens_compare.enabled else [],
        run=run_info(context, n_failed=len(failures)),
        failures=failures,
        max_samples=config.report.max_samples,
        title=config.report.title,
    )
    build_report(inputs, layout.report)
    return {}


STAGES: tuple[Stage, ...] = (
    Stage("data", ("data",), lambda out: out.manifest, data_stage),
    Stage("trace", TRACE_IDENTITY, lambda out: out.trace, trace_stage),
    Stage(
        "analyze",
        (*TRACE_IDENTITY, "analyze"),
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
    from evolens.io.store import read_failures as read_trace_failures

    return read_trace_failures(layout.trace) if layout.trace.is_dir() else []


def prompted_samples(context: RunContext, limit: int | None) -> list[Any]:
    """The traced samples (at most ``limit``) with their images loaded, for experiments that generate."""
    from evolens.data.images import load_image
    from evolens.data.sources import read_manifest
    from evolens.interventions.experiments import Prompted
    from evolens.io.store import finished_sample_ids

    finished = finished_sample_ids(context.layout.trace)
    vision = context.model.adapter.vision
    samples = []
    for line in read_manifest(context.layout.manifest):
        if line["id"] not in finished:
            continue
        image = load_image(line["image"]) if vision and line.get("image") else None
        samples.append(Prompted(str(line["id"]), image, str(line["prompt"]), line.get("ground_truth")))
    return samples[:limit]


def first_sample_per_prompt(layout: RunLayout, at_most: int = 3) -> list[str] | None:
    """The first finished sample of each prompt (for the single-sample figures), None if unknown."""
    from evolens.data.sources import read_manifest
    from evolens.io.store import finished_sample_ids

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
    import plotly
    import torch
    import transformers

    import evolens

    config = context.config
    prompts = sorted({str(line["prompt"]) for line in _manifest_lines(context.layout)})
    return {
        "model": config.model,
        "data": f"{describe_data(context)}; prompts: " + " | ".join(prompts),
        "created": context.record.created,
        "n_failed": n_failed,
        "config": config.to_yaml(),
        "settings": {"max_new_tokens": config.trace.max_new_tokens, "batch_size": config.trace.batch_size},
        "versions": {
            "evolens": evolens.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "plotly": plotly.__version__,
            "python": platform.python_version(),
        },
    }


def _manifest_lines(layout: RunLayout) -> list[dict[str, Any]]:
    from evolens.data.sources import read_manifest

    return read_manifest(layout.manifest)
