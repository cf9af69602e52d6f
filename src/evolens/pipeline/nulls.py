"""The run's nulls stage: the trace's own generated tokens scored again under each null condition of the
config's ``nulls:`` section (``evolens score --from OUT/trace --condition C --out OUT/nulls/C``), and the
null traces the analysis compares the trace with.

Each null is a trace folder of its own and resumes as the trace does (finished samples are kept, the rest
scored, samples no longer in the trace removed, a sample whose tokens changed scored again). It always runs
in this process (``LocalEngine``: the Ray engine does not score), with the run's lens and top-k,
without hidden states and without the image-token lens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolens.io.store import finished_sample_ids, read_failures
from evolens.pipeline.context import RunContext
from evolens.tracing.scoring import samples_from_trace
from evolens.tracing.tracer import trace


def nulls_stage(context: RunContext) -> dict[str, Any]:
    """Score the run's trace under every condition of ``nulls.conditions``; failed samples are recorded in
    each null's failures.jsonl (the analysis then pairs the samples the null has, and says so)."""
    config, layout = context.config, context.layout
    samples, _ = samples_from_trace(layout.trace)
    details: dict[str, Any] = {}
    for condition in config.nulls.conditions:
        out = layout.nulls / condition
        spec = config.trace.model_copy(
            update={"condition": condition, "keep_hidden": False, "image_tokens": False, "probe_words": None}
        )
        result = trace(context.model, samples, out=out, spec=spec, progress=not context.quiet, exclusive=True)
        failures = read_failures(out)
        context.say(
            f"nulls: {condition}: {len(result.traced)} scored now, {len(result.skipped)} already done"
            + (f", {len(failures)} failed (first: {failures[0].get('error')})" if failures else "")
        )
        details[condition] = {"samples": len(finished_sample_ids(out)), "failed": len(failures)}
    return details


def null_folders(context: RunContext) -> list[Path]:
    """The null traces the analysis compares the trace with: one per configured condition that scored at
    least one sample (a condition that failed everywhere is named on the console and left out)."""
    folders = []
    for condition in context.config.nulls.conditions:
        folder = context.layout.nulls / condition
        if finished_sample_ids(folder):
            folders.append(folder)
        else:
            context.say(f"analyze: the null '{condition}' scored no sample; left out of the image effect")
    return folders
