"""Teacher forcing: a batch of prompts with given responses, laid out for one forward pass.

``generate`` feeds a model its own tokens one step at a time; scoring feeds given tokens (a trace's own
generations, under the same or another input condition, or responses a researcher already has) all at
once. The processor builds the prompts exactly as for ``generate`` (left padded); ``with_responses`` then
puts each row's prompt at column 0, its response right after it and the padding at the end (so the plain
``arange`` positions of a forward pass are each row's true positions, as ``generate`` computes them from
the attention mask), and says which positions predict which response token: the hidden states at position
``prompt_length - 1 + r`` are what a trace records at step r.

Tensors with one value per token beside ``input_ids`` (Gemma 3's and PaliGemma's ``token_type_ids``,
Mllama's cross-attention mask) move with their tokens; a response token takes the value the family's adapter
names (``ModelAdapter.response_inputs``: PaliGemma's response is the causal "suffix", type 1), else that of
the prompt's last token, as ``generate`` extends them step by step.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evolens.data.resolve import Sample
from evolens.io.store import read_trace
from evolens.models.loaded import LoadedModel


@dataclass
class ScoringBatch:
    """One batch laid out for teacher forcing.

    Attributes:
        inputs: the model's keyword inputs (input_ids and attention_mask (B, W), the rest as built).
        positions: (B, P) the positions whose states predict response tokens 0..P-1 (clamped past a row's
            end), P the longest response.
        tokens: (B, P) the response tokens (the pad id past a row's end).
        lengths: (B,) each row's response length.
    """

    inputs: dict[str, Any]
    positions: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor


def with_responses(
    inputs: Mapping[str, Any],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    response_inputs: Mapping[str, int] | None = None,
) -> ScoringBatch:
    """The left-padded prompt batch ``inputs`` with ``responses`` appended, right padded (module doc)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    rows, width = ids.shape
    prompt = mask.sum(1).tolist()
    lengths = [len(response) for response in responses]
    if min(lengths, default=1) < 1:
        raise ValueError("every response needs at least one token")
    total = max(p + n for p, n in zip(prompt, lengths, strict=True))
    per_token = {
        name: value
        for name, value in inputs.items()
        if name not in ("input_ids", "attention_mask")
        and isinstance(value, torch.Tensor)
        and tuple(value.shape[:2]) == (rows, width)
    }
    new_ids = ids.new_full((rows, total), pad_id)
    new_mask = mask.new_zeros((rows, total))
    moved = {name: value.new_zeros((rows, total, *value.shape[2:])) for name, value in per_token.items()}
    fill = dict(response_inputs or {})
    for row, (length, response) in enumerate(zip(prompt, responses, strict=True)):
        end = length + len(response)
        new_ids[row, :length] = ids[row, width - length :]
        new_ids[row, length:end] = torch.tensor(list(response), dtype=ids.dtype, device=ids.device)
        new_mask[row, :end] = 1
        for name, value in per_token.items():
            moved[name][row, :length] = value[row, width - length :]
            moved[name][row, length:end] = fill[name] if name in fill else value[row, width - 1]
    longest = max(lengths)
    steps = torch.arange(longest)
    last = torch.tensor(prompt) - 1
    within = steps[None, :] < torch.tensor(lengths)[:, None]
    positions = torch.where(within, last[:, None] + steps[None, :], last[:, None])
    tokens = torch.full((rows, longest), pad_id, dtype=torch.long)
    for row, response in enumerate(responses):
        tokens[row, : len(response)] = torch.tensor(list(response))
    laid_out = {**inputs, "input_ids": new_ids, "attention_mask": new_mask, **moved}
    return ScoringBatch(laid_out, positions, tokens, torch.tensor(lengths))


@torch.inference_mode()
def forward(loaded: LoadedModel, inputs: dict[str, Any]) -> None:
    """One forward pass without a cache, computing the logits of the last position only where the model
    allows (the trace reads every layer through its hooks; the output is not needed)."""
    model = loaded.model
    extra: dict[str, Any] = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        extra["logits_to_keep"] = 1
    model(**inputs, **extra)


def samples_from_trace(directory: str | Path) -> tuple[list[Sample], dict[str, Any]]:
    """The finished samples of a trace with their generated tokens as the responses to score (same ids,
    images, prompts, ground truth and groups), and its meta.json."""
    tables = read_trace(directory)
    rows = tables.samples.astype(object).where(tables.samples.notna(), None).to_dict("records")
    samples = [
        Sample(
            sample_id=row["sample_id"],
            image=None if row["image"] is None else Path(row["image"]),
            prompt=row["prompt"],
            ground_truth=None if row["ground_truth"] is None else json.loads(row["ground_truth"]),
            group=row.get("group"),
            response=tuple(int(token) for token in row["token_ids"]),
        )
        for row in rows
    ]
    return samples, tables.meta
