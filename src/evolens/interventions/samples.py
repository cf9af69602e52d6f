"""The inputs of an intervention experiment: data rows (``evolens.data.sources``) with their images loaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evolens.data.images import load_image
from evolens.data.rows import DataRow
from evolens.errors import EvolensError, UsageError
from evolens.interventions.experiments import Prompted


def read_samples(
    images: Path | None,
    prompt: str,
    limit: int | None,
    shapes: int | None,
    shapes_seed: int,
    out: Path,
    vision: bool,
) -> tuple[list[Prompted], list[str]]:
    """The inputs (an image, a folder, a JSONL manifest, or shapes-world scenes) and the ones that failed."""
    from evolens.data.sources.local import folder_rows, image_rows, jsonl_rows
    from evolens.data.sources.shapes import shapes_rows

    prompts = [prompt] if prompt else []
    if shapes is not None:
        rows = shapes_rows(out / "shapes", prompts, shapes, seed=shapes_seed)
    elif images is None:
        if vision:
            raise UsageError("this model takes images: give --images PATH or --shapes N")
        return [Prompted(f"prompt-{i}", None, p) for i, p in enumerate(prompts)], []
    elif images.suffix == ".jsonl":
        rows = jsonl_rows(images, prompts, limit)
    elif images.is_dir():
        rows = folder_rows(images, prompts, limit)
    else:
        rows = image_rows(images, prompts)
    return samples_from_rows(rows, vision)


def samples_from_rows(rows: Sequence[DataRow], vision: bool) -> tuple[list[Prompted], list[str]]:
    """Data rows with their images loaded (for a vision model); rows whose image fails are listed apart."""
    samples, failures = [], []
    for row in rows:
        try:
            image = load_image(row.image) if (vision and row.image is not None) else None
        except EvolensError as exc:
            failures.append(f"{row.sample_id}: {exc}")
            continue
        samples.append(Prompted(row.sample_id, image, row.prompt, row.ground_truth))
    return samples, failures
