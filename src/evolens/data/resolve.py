"""What to trace: the ``images`` argument of ``evolens.trace`` (and ``--images``) turned into samples.

A sample is an ``evolens.data.rows.DataRow``: ``(sample_id, image, prompt, ground_truth)``.
Accepted, in order of checking:

- samples already made (any sequence of ``Sample``), e.g. from an MSCOCO, AMBER or shapes-world source;
- a JSONL manifest (``*.jsonl``: ``{"image", "prompt", "id"?, "ground_truth"?}`` per line, image paths
  relative to the manifest; ``prompt`` replaces every line's own prompt when given);
- a folder (every image directly in it) or one image file, with ``prompt``;
- a list of image files, with ``prompt``;
- None with ``prompt`` (one text-only sample per prompt, for text-only models).

Sample ids are stable: the same inputs give the same ids on every run, which is what resuming relies on.
New sources plug in by producing ``Sample`` rows (see ``evolens.data.sources``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evolens.data.rows import DataRow, pair_with_prompts, prompt_tag, safe_id, unique_ids
from evolens.data.sources.local import folder_rows, image_rows, jsonl_rows
from evolens.errors import UsageError

Sample = DataRow
"""One (image, prompt) pair to trace, with its stable id and optional ground truth."""

ImagesArgument = str | Path | Sequence[str | Path] | Sequence[Sample] | None


def resolve_samples(images: ImagesArgument, prompt: str | Sequence[str] | None = None) -> list[Sample]:
    """The samples ``images`` and ``prompt`` describe (see the module docstring); ids are unique."""
    prompts = _prompt_list(prompt)
    if images is None:
        if not prompts:
            raise UsageError(
                "nothing to trace: give images (a file, a folder or a JSONL manifest) or a prompt"
            )
        return unique_ids([Sample(f"prompt-{prompt_tag(p)}", None, p) for p in prompts])
    if isinstance(images, str | Path):
        return _from_path(Path(images), prompts)
    items = list(images)
    if all(isinstance(item, DataRow) for item in items):
        return _checked_unique(items)  # type: ignore[arg-type]
    if not prompts:
        raise UsageError("give a prompt (--prompt) to ask about the images")
    # Listed files become samples even when missing: they then fail alone, recorded in failures.jsonl.
    rows = [row for item in items for row in pair_with_prompts(safe_id(Path(item).stem), Path(item), prompts)]  # type: ignore[arg-type]
    return unique_ids(rows)


def _from_path(path: Path, prompts: list[str]) -> list[Sample]:
    if path.suffix.lower() == ".jsonl":
        rows = jsonl_rows(path, prompts)
        missing = [row.sample_id for row in rows if not row.prompt.strip()]
        if missing:
            raise UsageError(
                f"{path}: no prompt for {', '.join(missing[:3])}; add 'prompt' to the lines or give --prompt"
            )
        return rows
    if not prompts:
        raise UsageError(f"{path}: give a prompt (--prompt) to ask about the images")
    if path.is_dir():
        return folder_rows(path, prompts)
    return image_rows(path, prompts)


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
