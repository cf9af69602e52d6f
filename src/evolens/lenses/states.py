"""Training data of a tuned lens: every lens layer's state at every step the model generates, on disk.

The model generates on the samples (greedy, left-padded batches) with ``LayerCapture`` on, exactly as a
trace does, and the states of each generated step (lens layers 0..L at the position that predicts the next
token) are kept until the row's end of sequence. Each batch becomes one shard
``states/part-NNNNN.safetensors`` (written whole, then renamed): ``states`` (n, L+1, d) fp16 (fp32 where
fp16 would overflow) and, in its metadata, the sample id, image and count of rows of each sample. A rerun
skips the samples already in a shard, so an interrupted collection continues where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from evolens.data.images import load_image
from evolens.data.resolve import Sample
from evolens.errors import InputError
from evolens.io import atomic
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.models.loaded import LoadedModel

SHARDS = "states"
FAILURES = "failures.jsonl"


@dataclass
class LensData:
    """Every collected step: ``states`` (N, L+1, d) fp16 or fp32; per row its sample id and image group.

    ``groups`` names what a row's generation was conditioned on (the image's file name; the sample id for a
    text-only prompt): the held-out split keeps all rows of one image on the same side.
    """

    states: torch.Tensor
    sample_ids: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def subset(self, rows: torch.Tensor) -> LensData:
        """The rows at the (n,) int64 indices ``rows``."""
        picked = rows.tolist()
        return LensData(
            self.states[rows], [self.sample_ids[i] for i in picked], [self.groups[i] for i in picked]
        )


def collect_states(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    directory: Path,
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[dict[str, Any]]:
    """Generate on the samples not collected yet and write their states as shards under ``directory``.

    Returns the samples that failed (their image could not be read): ``{"sample_id", "image", "error"}``,
    also listed in ``directory/failures.jsonl``.
    """
    folder = directory / SHARDS
    folder.mkdir(parents=True, exist_ok=True)
    atomic.sweep_temporaries(folder)
    done = {entry["sample_id"] for entry in shard_index(folder)}
    todo = [sample for sample in samples if sample.sample_id not in done]
    failures: list[dict[str, Any]] = []
    next_part = 1 + len(list(folder.glob("part-*.safetensors")))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        readable: list[tuple[Sample, Image.Image | None]] = []
        for sample in batch:
            try:
                readable.append((sample, None if sample.image is None else load_image(sample.image)))
            except InputError as exc:
                failures.append(
                    {"sample_id": sample.sample_id, "image": str(sample.image), "error": str(exc)}
                )
        for group in _same_kind(readable):
            rows = _generate_states(loaded, group, max_new_tokens)
            _write_shard(folder / f"part-{next_part:05d}.safetensors", [s for s, _ in group], rows)
            next_part += 1
        progress(min(start + batch_size, len(todo)), len(todo))
    atomic.write_jsonl(directory / FAILURES, failures)
    return failures


def shard_index(folder: Path) -> list[dict[str, Any]]:
    """Per collected sample, in shard order: ``{"sample_id", "group", "rows", "shard"}``."""
    from safetensors import safe_open

    entries = []
    for path in sorted(folder.glob("part-*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        for entry in json.loads(metadata.get("samples", "[]")):
            entries.append({**entry, "shard": path.name})
    return entries


def load_states(directory: Path) -> LensData:
    """Every shard under ``directory`` read back into one ``LensData`` (rows in shard order)."""
    from safetensors.torch import load_file

    folder = directory / SHARDS
    parts, sample_ids, groups = [], [], []
    index = shard_index(folder)
    for path in sorted(folder.glob("part-*.safetensors")):
        parts.append(load_file(str(path))["states"])
    for entry in index:
        sample_ids += [entry["sample_id"]] * int(entry["rows"])
        groups += [entry["group"]] * int(entry["rows"])
    if not parts:
        raise InputError(f"{folder}: no generated states to train on (every input failed?)")
    dtype = torch.float32 if any(part.dtype == torch.float32 for part in parts) else parts[0].dtype
    states = torch.cat([part.to(dtype) for part in parts])
    if len(sample_ids) != states.shape[0]:
        raise InputError(
            f"{folder}: shard metadata lists {len(sample_ids)} rows, shards hold {states.shape[0]}"
        )
    return LensData(states, sample_ids, groups)


def _same_kind(
    readable: list[tuple[Sample, Image.Image | None]],
) -> list[list[tuple[Sample, Image.Image | None]]]:
    """Rows with and without an image never share a generate() call."""
    with_image = [pair for pair in readable if pair[1] is not None]
    without = [pair for pair in readable if pair[1] is None]
    return [group for group in (with_image, without) if group]


def _generate_states(
    loaded: LoadedModel, group: list[tuple[Sample, Image.Image | None]], max_new_tokens: int
) -> list[torch.Tensor]:
    """Per sample, the states of its generated steps up to its end of sequence: (n_steps, L+1, d)."""
    samples = [sample for sample, _ in group]
    images = [image for _, image in group]
    inputs = loaded.build_inputs([s.prompt for s in samples], images if images[0] is not None else None)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    with LayerCapture(loaded) as capture:
        streamer = TokenStreamer(lambda tokens: steps.append((capture.pop().cpu(), tokens.cpu())))
        loaded.generate(inputs, max_new_tokens=max_new_tokens, streamer=streamer)
    eos = torch.tensor(loaded.eos_token_ids or [-1])
    active = torch.ones(len(samples), dtype=torch.bool)
    kept: list[list[torch.Tensor]] = [[] for _ in samples]
    for states, tokens in steps:
        for row in active.nonzero().flatten().tolist():
            kept[row].append(states[row])
        active &= ~torch.isin(tokens, eos)
    return [torch.stack(rows).float() for rows in kept]


def _write_shard(path: Path, samples: list[Sample], rows: list[torch.Tensor]) -> None:
    from safetensors.torch import save

    states = torch.cat(rows)
    fits = bool(states.abs().max() < torch.finfo(torch.float16).max)
    entries = [
        {
            "sample_id": s.sample_id,
            "group": s.image.name if s.image is not None else s.sample_id,
            "rows": len(r),
        }
        for s, r in zip(samples, rows, strict=True)
    ]
    data = save(
        {"states": (states.half() if fits else states).contiguous()},
        metadata={"samples": atomic.json_text(entries, indent=None)},
    )
    atomic.write_bytes(path, data)
