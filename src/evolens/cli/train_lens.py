"""``evolens train-lens``: train a tuned lens on the model's own image-conditioned generations.

    evolens train-lens --model demo --source shapes --limit 240 --seed 40000000 --out runs/lens
    evolens train-lens --model M --images photos/ --prompt "Describe this image." --out runs/lens
    evolens trace --model M --images photos/ --prompt "..." --lens tuned:runs/lens --out runs/trace

The folder gets the lens (``config.json`` + ``params.pt``, the ``tuned-lens`` format) and ``manifest.json``
(data, steps, held-out KL per layer of the tuned and the logit lens). Run the same command again to resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from evolens.cli import app
from evolens.data.config import DataConfig
from evolens.errors import UsageError

Flag = typer.Option  # short alias so each option fits on one line


@app.command("train-lens")
def train_lens_command(
    out: Annotated[Path, Flag("--out", "-o", help="Lens folder (resumed when it exists).")],
    model: Annotated[str, Flag(help="demo, a cached hub id or a local model folder.")] = "demo",
    images: Annotated[
        Path | None, Flag(help="An image, a folder or a JSONL manifest (or use --source shapes).")
    ] = None,
    source: Annotated[str | None, Flag(help="image, folder, jsonl, coco, amber or shapes.")] = None,
    annotations: Annotated[Path | None, Flag(help="COCO annotation JSON or AMBER query JSON.")] = None,
    prompt: Annotated[
        list[str] | None, Flag("--prompt", "--prompts", "-p", help="Prompt; repeat for several.")
    ] = None,
    limit: Annotated[int | None, Flag(help="At most this many images (shapes: scenes).")] = None,
    seed: Annotated[int, Flag(help="First shapes-world scene; shuffle seed; batch seed.")] = 0,
    steps: Annotated[int, Flag(help="Optimizer steps.")] = 300,
    batch_size: Annotated[int, Flag(help="Generated tokens per optimizer step.")] = 64,
    optimizer: Annotated[str, Flag(help="sgd (Nesterov, tuned-lens' default) or adam.")] = "sgd",
    lr: Annotated[float | None, Flag(help="Learning rate (default: tuned-lens' for the optimizer).")] = None,
    held_out: Annotated[float, Flag(help="Fraction of images held out for evaluation.")] = 0.2,
    max_new_tokens: Annotated[int, Flag(help="Tokens generated per sample.")] = 48,
    generation_batch_size: Annotated[int, Flag(help="Samples per generate() call.")] = 8,
    checkpoint_every: Annotated[int, Flag(help="Steps between checkpoints.")] = 25,
    params_dtype: Annotated[str, Flag(help="Saved translators: float32 or bfloat16.")] = "float32",
    threads: Annotated[int | None, Flag(help="CPU threads for torch (default: torch's).")] = None,
    device: Annotated[str, Flag(help="cpu, cuda, cuda:1, mps.")] = "cpu",
    dtype: Annotated[str | None, Flag(help="Model dtype: float32, bfloat16 (default: the model's).")] = None,
) -> None:
    """Train a tuned lens (one affine translator per layer) on the model's own generations."""
    import torch

    from evolens.data.resolve import resolve_samples
    from evolens.data.sources import load_rows
    from evolens.lenses.training import LensTrainingSettings, train_lens
    from evolens.models import load_model

    if threads is not None:
        torch.set_num_threads(threads)
    settings = LensTrainingSettings(
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer,  # type: ignore[arg-type]
        lr=lr,
        held_out=held_out,
        seed=seed,
        max_new_tokens=max_new_tokens,
        generation_batch_size=generation_batch_size,
        checkpoint_every=checkpoint_every,
        params_dtype=params_dtype,  # type: ignore[arg-type]
    )
    if images is None and source is None:  # prompts alone: a text-only model's own generations
        samples = resolve_samples(None, prompt or None)
    else:
        samples = resolve_samples(
            load_rows(_data_config(source, images, annotations, prompt, limit, seed), out / "data")
        )
    console = Console(stderr=True)
    loaded = load_model(model, device=device, dtype=dtype)
    note = {"source": source, "path": None if images is None else str(images), "limit": limit, "seed": seed}
    manifest = train_lens(
        loaded,
        samples,
        out,
        settings,
        data_note=note,
        report=lambda line: console.print(line, highlight=False),
    )
    kl = manifest["held_out_kl"]
    typer.echo(
        f"held-out KL(final || layer), mean over layers 1..L-1: tuned lens {kl['tuned_mean']:.4f}, "
        f"logit lens {kl['logit_mean']:.4f} ({kl['n_rows']} generated tokens)"
    )
    typer.echo(f"lens in {out} (use --lens tuned:{out})")


def _data_config(
    source: str | None,
    images: Path | None,
    annotations: Path | None,
    prompts: list[str] | None,
    limit: int | None,
    seed: int,
) -> DataConfig:
    """The flags as a ``DataConfig`` (a bad combination is one line, as in ``evolens run``)."""
    from pydantic import ValidationError

    try:
        return DataConfig(
            source=source,  # type: ignore[arg-type]
            path=images,
            annotations=annotations,
            prompts=prompts or [],
            limit=limit,
            seed=seed,
        )
    except ValidationError as exc:
        raise UsageError(f"data: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from exc
