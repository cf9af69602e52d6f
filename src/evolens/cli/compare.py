"""``evolens compare TRACE_A TRACE_B``: per-layer curves of several traces on the same axes.

E.g. the demo VLM on image prompts against its decoder (``demo-text``) on text-only prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolens.cli import app
from evolens.errors import UsageError


@app.command("compare")
def compare_command(
    traces: Annotated[list[Path], typer.Argument(help="Two or more trace directories.")],
    labels: Annotated[str | None, typer.Option(help="Comma-separated names, one per trace.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("evolens-compare"),
    kind: Annotated[str, typer.Option(help="Tokens to average: all, content, function, copied.")] = "all",
    n_boot: Annotated[int, typer.Option(min=10, help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Overlay JSD, emitted-token probability, entropy and KL-to-last curves (95% bands) of the traces.

    With traces of the same inputs under two lenses (--lens normed, --lens tuned) it is the lens comparison:
    critical and mutation layers with bootstrap intervals, and KL to the final layer per layer.
    """
    from evolens.pipeline.compare import compare_traces

    if len(traces) < 2:
        raise UsageError("compare needs at least two trace directories")
    names = [s.strip() for s in labels.split(",")] if labels else None
    if names is not None and len(names) != len(traces):
        raise UsageError(f"--labels gives {len(names)} names for {len(traces)} traces")
    result = compare_traces(traces, names, out, group=kind, n_boot=n_boot, seed=seed)
    for entry, row in zip(result["traces"], result["stages"], strict=True):
        typer.echo(
            f"{entry['label']} (lens {entry['lens']}): critical layer {entry['critical_layer']} "
            f"{row['critical_layer_ci'] or ''}, mutation layer {entry['mutation_layer']} "
            f"{row['mutation_layer_ci'] or ''} ({entry['n_samples']} samples, {entry['n_tokens']} tokens)"
        )
    if not result["same_inputs"]:
        typer.echo("note: the traces hold different inputs or generations")
    typer.echo(f"figure and compare.json in {out}")
