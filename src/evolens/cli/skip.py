"""``evolens skip``: generate with decoder layers skipped and compare with the full model.

    evolens skip --model demo --shapes 100 --prompt "Describe this image." --out runs/skip \\
        --plan stages --trace runs/trace
    evolens skip --model demo --images photos/ --prompt "Describe this image." --out runs/skip --skip 12-20
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from evolens.cli import app
from evolens.errors import UsageError

if TYPE_CHECKING:
    from evolens.interventions.experiments import Condition

Flag = typer.Option  # short alias so each option fits on one line


def check_plan_flags(skip: str | None, plan: str | None, trace: Path | None) -> None:
    """The flag checks that need no model: one of --skip / --plan, and the trace a plan needs."""
    if (skip is None) == (plan is None):
        raise UsageError("give exactly one of --skip RANGE or --plan stages")
    if plan is None:
        return
    if plan != "stages":
        raise UsageError(f"unknown --plan '{plan}'; the only plan is 'stages' (with --trace)")
    if trace is None:
        raise UsageError("--plan stages needs --trace TRACE_DIR (a trace of this model)")
    if not (trace / "meta.json").is_file():
        raise UsageError(f"{trace}: no trace there (no meta.json); run `evolens trace` first")


def build_conditions(
    n_layers: int, skip: str | None, plan: str | None, trace: Path | None, seeds: int
) -> tuple[list[Condition], dict | None]:
    """The conditions from ``--skip`` or ``--plan stages --trace``, and the stage result used (if any)."""
    from evolens.interventions.experiments import custom_conditions, stage_conditions
    from evolens.interventions.plan import LayerPlan

    check_plan_flags(skip, plan, trace)
    seed_list = list(range(seeds))
    if skip is not None:
        return custom_conditions(LayerPlan.parse(skip, n_layers), seed_list), None
    from evolens.analysis import detect_stages, load_trace

    assert trace is not None  # check_plan_flags requires it with --plan
    stages = detect_stages(load_trace(trace))
    if stages.n_layers != n_layers:
        raise UsageError(f"{trace} traces a model with {stages.n_layers} layers; this one has {n_layers}")
    return stage_conditions(stages, seed_list), stages.to_dict()


@app.command("skip")
def skip_command(
    out: Annotated[Path, Flag("--out", help="Output folder (skip.json, skip.png, skip.svg).")],
    model: Annotated[str, Flag("--model", help="Model name: demo, demo-text, a hub id or a path.")] = "demo",
    images: Annotated[Path | None, Flag("--images", help="An image, a folder or a JSONL manifest.")] = None,
    shapes: Annotated[int | None, Flag("--shapes", help="Use N shapes-world scenes (ground truth).")] = None,
    shapes_seed: Annotated[int, Flag("--shapes-seed", help="First shapes-world seed.")] = 20_000_000,
    prompt: Annotated[str, Flag("--prompt", help="The prompt for every image.")] = "Describe this image.",
    skip: Annotated[str | None, Flag("--skip", help="Decoder layers to skip, e.g. 12-20 or 3,5,7-9.")] = None,
    plan: Annotated[str | None, Flag("--plan", help="'stages': plans from stage detection.")] = None,
    trace: Annotated[Path | None, Flag("--trace", help="Trace folder for --plan stages.")] = None,
    seeds: Annotated[int, Flag("--seeds", help="Random control sets per condition.")] = 3,
    max_new_tokens: Annotated[int, Flag("--max-new-tokens")] = 48,
    limit: Annotated[int | None, Flag("--limit", help="At most this many images.")] = None,
    batch_size: Annotated[int, Flag("--batch-size")] = 8,
    device: Annotated[str, Flag("--device")] = "cpu",
    dtype: Annotated[str | None, Flag("--dtype")] = None,
) -> None:
    """Skip decoder layers (a range, or the stages found in a trace) and measure what changes."""
    from evolens.cli.inputs import experiment_samples
    from evolens.interventions.experiments import run_experiment
    from evolens.interventions.report import skip_table, write_skip_outputs
    from evolens.models import load_model

    check_plan_flags(skip, plan, trace)
    loaded = load_model(model, device=device, dtype=dtype)
    conditions, stages = build_conditions(loaded.n_layers, skip, plan, trace, seeds)
    out.mkdir(parents=True, exist_ok=True)
    samples, failures = experiment_samples(
        images, prompt, limit, shapes, shapes_seed, out, loaded.adapter.vision
    )
    console = Console(stderr=True)
    for condition in conditions:
        console.print(f"{condition.name}: {condition.plan.describe()}")
    summaries = run_experiment(
        loaded, samples, conditions, max_new_tokens, batch_size, progress=lambda m: console.print(m)
    )
    settings = {
        "model": loaded.name,
        "n_layers": loaded.n_layers,
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "n_samples": len(samples),
        "random_seeds": list(range(seeds)),
        "failures": failures,
    }
    record = write_skip_outputs(out, summaries, samples, settings, stages)
    table_console = Console() if Console().is_terminal else Console(width=150)
    table_console.print(skip_table(record, f"evolens skip: {loaded.name}, {len(samples)} inputs"))
    typer.echo(f"wrote {out / 'skip.json'}, {out / 'skip.png'}, {out / 'skip.svg'}")
    for failure in failures:
        typer.echo(f"failed: {failure}", err=True)
    if failures:
        raise typer.Exit(1)
