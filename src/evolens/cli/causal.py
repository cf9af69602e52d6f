"""``evolens causal``: attention knockout, image-token ablation and activation patching by layer window.

    evolens causal --model demo --shapes 40 --prompt "What is the color of the shape?" \\
        --answer red,orange,yellow,green,blue,purple,pink,brown --method knockout --method patch \\
        --window 3 --corrupt blank --out runs/causal
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolens.cli import app

Flag = typer.Option


@app.command("causal")
def causal_command(
    out: Annotated[Path, Flag("--out", help="Output folder (causal.json).")],
    model: Annotated[str, Flag(help="demo, a cached hub id or a local path.")] = "demo",
    images: Annotated[Path | None, Flag(help="An image, a folder or a JSONL manifest.")] = None,
    shapes: Annotated[int | None, Flag(help="Use N shapes-world scenes (ground truth).")] = None,
    shapes_seed: Annotated[int, Flag(help="First shapes-world seed (held out from training).")] = 30_000_000,
    prompt: Annotated[str, Flag(help="The prompt for every image.")] = "What is the color of the shape?",
    method: Annotated[
        list[str] | None, Flag("--method", help="knockout, ablate or patch (repeat for several).")
    ] = None,
    window: Annotated[int, Flag(help="Consecutive layers per window (knockout, patch).")] = 3,
    corrupt: Annotated[str, Flag(help="patch into: noise, no-image, blank or shuffled.")] = "noise",
    queries: Annotated[
        str, Flag(help="knockout from the target position (target) or all positions (all).")
    ] = "target",
    baseline: Annotated[str, Flag(help="ablate to the image tokens' mean state (mean) or zero.")] = "mean",
    answer: Annotated[
        str | None, Flag(help="Answer words (e.g. the colours): the target is the first one the model says.")
    ] = None,
    max_new_tokens: Annotated[int, Flag(help="Longest answer searched for the target.")] = 16,
    limit: Annotated[int | None, Flag(help="At most this many images.")] = None,
    batch_size: Annotated[int, Flag(help="Samples per forward pass.")] = 8,
    n_boot: Annotated[int, Flag(help="Bootstrap replicates (over images).")] = 1000,
    seed: Annotated[int, Flag(help="Seeds the noise and the shuffled images.")] = 0,
    device: Annotated[str, Flag(help="cpu, cuda, cuda:1, mps.")] = "cpu",
    dtype: Annotated[str | None, Flag(help="float32, bfloat16 or float16.")] = None,
) -> None:
    """Which layer windows the answer depends on: knock out attention to the image, ablate the image
    tokens, or patch clean states into a corrupted run; effects with intervals over images."""
    from rich.console import Console

    from evolens.cli.inputs import experiment_samples
    from evolens.interventions.causal import CausalPlan
    from evolens.interventions.causal_run import find_targets, run_causal, write_causal
    from evolens.models import load_model

    plans = [
        CausalPlan(name, window, None, queries, baseline, corrupt, seed=seed)  # type: ignore[arg-type]
        for name in method or ["knockout"]
    ]
    words = [w.strip() for w in answer.split(",") if w.strip()] if answer else []
    loaded = load_model(model, device=device, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    samples, failures = experiment_samples(
        images, prompt, limit, shapes, shapes_seed, out, loaded.adapter.vision
    )
    console = Console(stderr=True)
    targets, missing = find_targets(loaded, samples, words, max_new_tokens, batch_size)
    console.print(f"{len(targets)} targets; {len(missing)} answers without one of the answer words")
    results = [
        run_causal(loaded, targets, plan, batch_size, n_boot, lambda message: console.print(message))
        for plan in plans
    ]
    settings = {
        "model": loaded.name,
        "n_layers": loaded.n_layers,
        "prompt": prompt,
        "answer_words": words,
        "window": window,
        "corrupt": corrupt,
        "queries": queries,
        "baseline": baseline,
        "seed": seed,
        "n_boot": n_boot,
        "without_target": missing,
        "failures": failures,
    }
    path = write_causal(out, results, settings)
    typer.echo(f"wrote {path}")
    if failures:
        for failure in failures:
            typer.echo(f"failed: {failure}", err=True)
        raise typer.Exit(1)
