"""The one input path: what ``evolens trace``, ``run``, ``skip``, ``hallucination`` and ``train-lens`` run on.

``resolve_samples`` turns any ``images`` argument into ``Sample`` rows (``evolens.data.rows.DataRow``:
``sample_id, image, prompt, ground_truth``). Accepted, in order of checking:

- a ``DataConfig`` (any source: image, folder, JSONL manifest, MSCOCO, AMBER, shapes world);
- samples already made (any sequence of ``Sample``);
- a path: a JSONL manifest (suffix ``.jsonl``, any case), a folder or one image file, with ``prompt``
  (a manifest's own prompts are replaced when ``prompt`` is given);
- a list of image files, with ``prompt``;
- None with ``prompt`` (one text-only sample per prompt, for text-only models).

Paths go through ``DataConfig`` and ``evolens.data.sources.load_rows``, so every command treats suffixes,
``limit``, ``shuffle`` and ``seed`` the same way. Sample ids are stable: the same inputs give the same ids
on every run, which is what resuming relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from evolens.data.config import DataConfig, data_config
from evolens.data.images import load_image
from evolens.data.rows import DataRow, pair_with_prompts, prompt_tag, select, unique_ids
from evolens.data.sources import load_rows
from evolens.errors import EvolensError, UsageError

Sample = DataRow
"""One (image, prompt) pair to trace, with its stable id and optional ground truth."""

ImagesArgument = DataConfig | str | Path | Sequence[str | Path] | Sequence[Sample] | None


def resolve_samples(
    images: ImagesArgument,
    prompt: str | Sequence[str] | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    workdir: Path | None = None,
) -> list[Sample]:
    """The samples ``images`` and ``prompt`` describe (see the module docstring); ids are unique.

    ``limit``/``shuffle``/``seed`` select among the inputs (shuffle with the seed, then keep the first
    ``limit``); ``workdir`` is where generated sources (the shapes world) write their images.
    """
    prompts = _prompt_list(prompt)
    if isinstance(images, DataConfig):
        return load_rows(images, workdir or Path.cwd())
    if images is None:
        if not prompts:
            raise UsageError(
                "nothing to trace: give images (a file, a folder or a JSONL manifest) or a prompt"
            )
        rows = [Sample(f"prompt-{prompt_tag(p)}", None, p) for p in prompts]
        return unique_ids(select(rows, limit, shuffle, seed))
    if isinstance(images, str | Path):
        config = data_config(path=Path(images), prompts=prompts, limit=limit, shuffle=shuffle, seed=seed)
        return load_rows(config, workdir or Path.cwd())
    items = list(images)
    if all(isinstance(item, DataRow) for item in items):
        return _checked_unique(select(items, limit, shuffle, seed))  # type: ignore[arg-type]
    if not prompts:
        raise UsageError("give a prompt (--prompt) to ask about the images")
    # Listed files become samples even when missing: they then fail alone, recorded in failures.jsonl.
    paths = select([Path(item) for item in items], limit, shuffle, seed)  # type: ignore[arg-type]
    return unique_ids([row for path in paths for row in pair_with_prompts(path.stem, path, prompts)])


def open_images(
    samples: Sequence[Sample], vision: bool
) -> tuple[list[Sample], list[Image.Image | None], list[dict[str, str | None]]]:
    """Decode each sample's image (None for text-only samples, or for every sample of a text-only model).

    Returns the samples whose image could be read, their images, and one failure record
    ``{"sample_id", "image", "error"}`` for each of the others (the trace's failures.jsonl format).
    """
    kept: list[Sample] = []
    images: list[Image.Image | None] = []
    failures: list[dict[str, str | None]] = []
    for sample in samples:
        try:
            image = load_image(sample.image) if vision and sample.image is not None else None
        except EvolensError as exc:
            failures.append({"sample_id": sample.sample_id, "image": str(sample.image), "error": str(exc)})
            continue
        kept.append(sample)
        images.append(image)
    return kept, images, failures


def _prompt_list(prompt: str | Sequence[str] | None) -> list[str]:
    if prompt is None:
        return []
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    for text in prompts:
        if not text or not text.strip():
            raise UsageError("empty prompt: give a non-empty --prompt")
    return prompts


def _checked_unique(samples: list[Sample]) -> list[Sample]:
    seen: set[str] = set()
    for sample in samples:
        if sample.sample_id in seen:
            raise UsageError(f"two samples share the id '{sample.sample_id}'; sample ids must be unique")
        seen.add(sample.sample_id)
    return samples
