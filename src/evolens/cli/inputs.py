"""The input flags the experiment commands share (--images / --shapes / --prompt / --limit), resolved by the
one input path (``evolens.data.resolve``)."""

from __future__ import annotations

from pathlib import Path

from evolens.data.config import data_config
from evolens.data.resolve import Sample, open_images, resolve_samples
from evolens.errors import UsageError


def experiment_samples(
    images: Path | None,
    prompt: str,
    limit: int | None,
    shapes: int | None,
    shapes_seed: int,
    out: Path,
    vision: bool,
) -> tuple[list[Sample], list[str]]:
    """The inputs (an image, a folder, a JSONL manifest, or ``shapes`` shapes-world scenes written under
    ``out``) whose images can be read, and one "id: error" line for each of the others."""
    if shapes is not None:
        config = data_config(source="shapes", limit=shapes, seed=shapes_seed, prompts=[prompt])
        samples = resolve_samples(config, workdir=out)
    elif images is None:
        if vision:
            raise UsageError("this model takes images: give --images PATH or --shapes N")
        samples = resolve_samples(None, prompt, limit=limit)
    else:
        samples = resolve_samples(images, prompt, limit=limit)
    readable, _, failures = open_images(samples, vision)
    return readable, [f"{failure['sample_id']}: {failure['error']}" for failure in failures]
