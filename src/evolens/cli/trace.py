"""``evolens trace``: generate on images (or a manifest) and write the per-layer trace dataset.

Its trace flags are the fields of ``evolens.tracing.spec.TraceSpec`` (same names, same defaults), its Ray
flags those of ``RayOptions`` (``RAY_FLAGS``): ``tests/test_trace_cli.py`` checks both against the specs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.cli import app

if TYPE_CHECKING:
    from evolens.tracing.engines import TraceResult


@app.command("trace")
def trace_command(
    images: Annotated[
        Path | None,
        typer.Option(help="An image, a folder of images, or a JSONL manifest (image and prompt per line)."),
    ] = None,
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", "-p", help="The question; repeat for several.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Trace directory (resumes when it exists).")
    ] = Path("evolens-trace"),
    model: Annotated[str, typer.Option(help="demo, demo-text, a cached hub id or a local path.")] = "demo",
    limit: Annotated[
        int | None, typer.Option(help="At most this many inputs (images, manifest lines), in order.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate per sample.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Samples per generate() call (left padded).")] = 4,
    lens: Annotated[
        str,
        typer.Option(
            help="normed (final norm first, correct), raw (the paper's), tuned (the model's tuned lens) "
            "or tuned:PATH (a tuned-lens folder, e.g. from `evolens train-lens`)."
        ),
    ] = "normed",
    paper_js: Annotated[
        bool | None,
        typer.Option(
            "--paper-js/--no-paper-js", help="Record the paper's JS (default: only with --lens raw)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="Top tokens kept per layer and step.")] = 5,
    keep_hidden: Annotated[
        bool | None,
        typer.Option(
            "--keep-hidden/--no-keep-hidden", help="Store hidden states (fp16) for the feature views."
        ),
    ] = None,
    hidden_steps: Annotated[
        str, typer.Option(help="With --keep-hidden: steps to keep, e.g. all, 0-9, 0,3,5.")
    ] = "all",
    hidden_layers: Annotated[str, typer.Option(help="With --keep-hidden: lens layers to keep.")] = "all",
    do_sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Sampling nucleus.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the shuffled condition.")] = 0,
    condition: Annotated[
        str, typer.Option(help="What the model sees: image, no-image, blank or shuffled (the nulls).")
    ] = "image",
    image_tokens: Annotated[
        bool,
        typer.Option(
            "--image-tokens/--no-image-tokens",
            help="Also read the lens at every image token and layer (the image_tokens/ table).",
        ),
    ] = False,
    probe_words: Annotated[
        str | None,
        typer.Option(help="With --image-tokens: words to follow, e.g. red,circle (default: generated ones)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps.")] = "cpu",
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16 or float16 (default: model's).")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (in this process) or ray (actors on a Ray cluster; evolens[ray]).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (auto, HOST:PORT); default: start a local one.")
    ] = None,
    actors: Annotated[
        int | None, typer.Option(help="--engine ray: tracer actors, one model each [1].")
    ] = None,
    gpus_per_actor: Annotated[
        float | None, typer.Option(help="--engine ray: GPUs per actor (default 1 with --device cuda).")
    ] = None,
    cpus_per_actor: Annotated[
        float | None, typer.Option(help="--engine ray: logical CPUs per actor (default 1).")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            help="--engine ray: times a batch is traced again after its actor died; then it fails [3]."
        ),
    ] = None,
    max_restarts: Annotated[
        int | None, typer.Option(help="--engine ray: times Ray restarts an actor that died (default 3).")
    ] = None,
) -> None:
    """Trace generation layer by layer: every layer's next-token distribution, reduced to metrics."""
    from evolens.errors import UsageError
    from evolens.tracing.engines import engine_for
    from evolens.tracing.spec import RayOptions, TraceSpec
    from evolens.tracing.tracer import trace

    given = dict(locals())
    spec = TraceSpec.of(**{name: given[name] for name in TraceSpec.model_fields})
    cluster = {field: given[flag] for field, flag in RAY_FLAGS.items() if given[flag] is not None}
    if cluster and engine == "local":
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in RAY_FLAGS.values())
        raise UsageError(f"{flags} need --engine ray")
    options = RayOptions.of(**cluster)
    result = trace(
        model,
        images,
        prompt or None,
        out=out,
        spec=spec,
        engine=engine_for(engine, options),
        progress=True,
        device=device,
        dtype=dtype,
        limit=limit,
    )
    say_result(result, "traced")


def say_result(result: TraceResult, done: str) -> None:
    """What a trace did, on stderr; the failed inputs listed and exit code 1 when any failed."""
    from rich.console import Console

    console = Console(stderr=True)
    skipped = f", {len(result.skipped)} already done" if result.skipped else ""
    console.print(f"{done} {len(result.traced)} samples{skipped} -> {result.out}")
    if result.failures:
        console.print(
            f"[red]{len(result.failures)} inputs failed[/red] (listed in {result.out / 'failures.jsonl'}):"
        )
        for failure in result.failures:
            console.print(f"  {failure['sample_id']}: {failure['error']}", markup=False, highlight=False)
        raise typer.Exit(1)


RAY_FLAGS: dict[str, str] = {
    "address": "ray_address",
    "actors": "actors",
    "gpus_per_actor": "gpus_per_actor",
    "cpus_per_actor": "cpus_per_actor",
    "max_retries": "max_retries",
    "max_restarts": "max_restarts",
}
"""The Ray engine's flags (parameter names) by ``RayOptions`` field; unset, they take its defaults."""
