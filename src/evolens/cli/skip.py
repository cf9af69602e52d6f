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
    from evolens.interventions.skip_run import SkipPlan

Flag = typer.Option  # short alias so each option fits on one line


def skip_plan(
    skip: str | None, plan: str | None, trace: Path | None, seeds: int, max_new_tokens: int, batch_size: int
) -> SkipPlan:
    """The ``SkipPlan`` of the flags, checked before any model loads: one of --skip / --plan, and the trace
    a plan needs."""
    from evolens.interventions.skip_run import SkipPlan

    if (skip is None) == (plan is None):
        raise UsageError("give exactly one of --skip RANGE or --plan stages")
    if plan is not None and plan != "stages":
        raise UsageError(f"unknown --plan '{plan}'; the only plan is 'stages' (with --trace)")
    if plan is not None and trace is None:
        raise UsageError("--plan stages needs --trace TRACE_DIR (a trace of this model)")
    if trace is not None and not (trace / "meta.json").is_file():
        raise UsageError(f"{trace}: no trace there (no meta.json); run `evolens trace` first")
    return SkipPlan("stages" if skip is None else skip, seeds, max_new_tokens, batch_size, trace)


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
    from evolens.interventions.report import skip_table
    from evolens.interventions.skip_run import run_skip
    from evolens.models import load_model

    chosen = skip_plan(skip, plan, trace, seeds, max_new_tokens, batch_size)
    loaded = load_model(model, device=device, dtype=dtype)
    conditions = chosen.conditions(loaded.n_layers)
    out.mkdir(parents=True, exist_ok=True)
    samples, failures = experiment_samples(
        images, prompt, limit, shapes, shapes_seed, out, loaded.adapter.vision
    )
    console = Console(stderr=True)
    for condition in conditions[0]:
        console.print(f"{condition.name}: {condition.plan.describe()}")
    record = run_skip(
        loaded, samples, failures, chosen, out, lambda message: console.print(message), conditions
    )
    table_console = Console() if Console().is_terminal else Console(width=150)
    table_console.print(skip_table(record, f"evolens skip: {loaded.name}, {len(samples)} inputs"))
    typer.echo(f"wrote {out / 'skip.json'}, {out / 'skip.png'}, {out / 'skip.svg'}")
    for failure in failures:
        typer.echo(f"failed: {failure}", err=True)
    if failures:
        raise typer.Exit(1)
