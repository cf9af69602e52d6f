"""``evolens run``: one command from images (or a benchmark) to an interactive report, resumable.

Flags override the YAML config's values; exit codes: 0 all done, 1 finished with some inputs failed,
2 usage or configuration error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from evolens.cli import app

Flag = typer.Option  # short alias so each option fits on one line


@app.command("run")
def run_command(
    config: Annotated[
        Path | None, Flag("--config", "-c", help="YAML config (e.g. configs/demo.yaml).")
    ] = None,
    model: Annotated[
        str | None, Flag(help="'demo', a cached Hugging Face id or a local model folder.")
    ] = None,
    device: Annotated[str | None, Flag(help="cpu, cuda, cuda:1 ...")] = None,
    dtype: Annotated[
        str | None, Flag(help="float32, bfloat16 or float16 (default: the model's own).")
    ] = None,
    images: Annotated[
        Path | None, Flag(help="An image, a folder, a JSONL manifest or a COCO/AMBER images folder.")
    ] = None,
    source: Annotated[
        str | None, Flag(help="image, folder, jsonl, coco, amber or shapes (default: from --images).")
    ] = None,
    annotations: Annotated[Path | None, Flag(help="COCO annotation JSON or AMBER query JSON.")] = None,
    prompt: Annotated[list[str] | None, Flag("--prompt", "-p", help="Prompt; repeat for several.")] = None,
    limit: Annotated[
        int | None, Flag(help="At most this many images (manifest lines, AMBER queries).")
    ] = None,
    shuffle: Annotated[bool | None, Flag("--shuffle/--no-shuffle", help="Shuffle before --limit.")] = None,
    seed: Annotated[int | None, Flag(help="Seed of --shuffle; first scene of the shapes world.")] = None,
    out: Annotated[Path | None, Flag("--out", "-o", help="Run folder (resumed when it exists).")] = None,
    max_new_tokens: Annotated[int | None, Flag(help="Tokens to generate per sample.")] = None,
    batch_size: Annotated[int | None, Flag(help="Samples traced together.")] = None,
    lens: Annotated[
        str | None, Flag(help="normed (default), raw (the paper's), tuned or tuned:PATH (a tuned lens).")
    ] = None,
    top_k: Annotated[int | None, Flag(help="Top-k tokens kept per layer.")] = None,
    keep_hidden: Annotated[
        bool | None, Flag("--keep-hidden/--no-keep-hidden", help="Store hidden states.")
    ] = None,
    image_tokens: Annotated[
        bool | None,
        Flag("--image-tokens/--no-image-tokens", help="Read the lens at every image token and layer."),
    ] = None,
    probe_words: Annotated[
        str | None, Flag(help="With --image-tokens: words to follow (default: the generated ones).")
    ] = None,
    null: Annotated[
        list[str] | None,
        Flag("--null", help="Also score the trace without the image: no-image, blank or shuffled (repeat)."),
    ] = None,
    analyze: Annotated[
        bool | None, Flag("--analyze/--no-analyze", help="Stages and figures (default on).")
    ] = None,
    answer: Annotated[
        str | None,
        Flag(help="Answer step of the many-images feature view: words (red,green,...) or a step index."),
    ] = None,
    projection: Annotated[
        list[str] | None,
        Flag(help="Feature views of the hidden states: tsne and/or pca (repeat; turns --keep-hidden on)."),
    ] = None,
    skip: Annotated[bool | None, Flag("--skip/--no-skip", help="Run the layer-skipping experiments.")] = None,
    causal: Annotated[
        list[str] | None,
        Flag("--causal", help="Causal tests by layer window: knockout, ablate or patch (repeat)."),
    ] = None,
    hallucination: Annotated[
        bool | None, Flag("--hallucination/--no-hallucination", help="Score hallucinations.")
    ] = None,
    compare_lens: Annotated[
        str | None,
        Flag(help="Also trace with this second lens (e.g. tuned) and compare stages and KL-to-final."),
    ] = None,
    report: Annotated[
        bool | None, Flag("--report/--no-report", help="Write report.html (default on).")
    ] = None,
    overwrite: Annotated[bool, Flag("--overwrite", help="Delete the run's results and start over.")] = False,
    quiet: Annotated[
        bool, Flag("--quiet", "-q", help="No progress output; print only the report path.")
    ] = False,
) -> None:
    """Trace, analyse, experiment and report in one go; run it again to resume."""
    from evolens.pipeline.config import answer_words, load_config, parse_answer

    overrides: dict[str, Any] = {
        "model": model,
        "device": device,
        "dtype": dtype,
        "out": out,
        "data.path": images,
        "data.source": source,
        "data.annotations": annotations,
        "data.prompts": prompt or None,
        "data.limit": limit,
        "data.shuffle": shuffle,
        "data.seed": seed,
        "trace.max_new_tokens": max_new_tokens,
        "trace.batch_size": batch_size,
        "trace.lens": lens,
        "trace.top_k": top_k,
        "trace.keep_hidden": keep_hidden,
        "trace.image_tokens": image_tokens,
        "trace.probe_words": probe_words,
        "nulls.conditions": null or None,
        "analyze.enabled": analyze,
        "analyze.answer": None if answer is None else parse_answer(answer),
        "analyze.projections": projection or None,
        "skip.enabled": skip,
        "causal.methods": causal or None,
        "causal.answer": answer_words(answer),
        "hallucination.enabled": hallucination,
        "lens_compare.enabled": None if compare_lens is None else True,
        "lens_compare.lens": compare_lens,
        "report.enabled": report,
    }
    settings = load_config(config, {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
    console = Console(stderr=True)
    from evolens.pipeline.run import run_pipeline  # torch and transformers: only once the config is valid

    result = run_pipeline(settings, overwrite=overwrite, quiet=quiet, console=console)
    for failure in result.failures:
        typer.echo(f"failed {failure.get('sample_id')}: {failure.get('error')}", err=True)
    if result.failures:
        typer.echo(
            f"{len(result.failures)} input(s) failed; the others finished (listed in the report)", err=True
        )
    if result.report is not None:
        if not quiet:
            console.print("report:", style="bold")
        typer.echo(str(result.report))
    elif not quiet:
        console.print(f"results in {result.out}")
    raise typer.Exit(result.exit_code)
