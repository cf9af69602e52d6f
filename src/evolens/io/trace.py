"""A trace directory in memory: its metadata, its tables, and its per-layer metrics as arrays.

Everything evolens analyses is computed from this object alone (no model). The on-disk format is
docs/trace-format.md; L is the number of decoder layers and lens layers are 0..L.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from evolens.errors import InputError, UsageError
from evolens.io.image_tokens import read_image_tokens
from evolens.io.store import hidden_path, read_trace
from evolens.vocabulary import names

PER_LAYER = names(per="layer", stored=True)
"""Step columns holding one value per lens layer: length L+1."""
PER_TRANSITION = names(per="transition", stored=True)
"""Step columns holding one value per pair of consecutive lens layers (l, l+1): length L."""


@dataclass(frozen=True)
class HiddenStates:
    """Stored hidden states of one sample.

    Attributes:
        states: (n_kept_steps, n_kept_layers, d) float32.
        steps: (n_kept_steps,) the generated step of each row.
        layers: (n_kept_layers,) the lens layer of each column.
    """

    states: np.ndarray
    steps: np.ndarray
    layers: np.ndarray

    def at(self, step: int, layer: int) -> np.ndarray:
        """The state (d,) of one step at one lens layer; KeyError when it was not kept."""
        step_rows = np.flatnonzero(self.steps == step)
        layer_cols = np.flatnonzero(self.layers == layer)
        if not len(step_rows) or not len(layer_cols):
            raise KeyError(f"step {step}, layer {layer} not stored")
        return self.states[step_rows[0], layer_cols[0]]


def read_tables(directory: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(meta, samples, steps) of a trace directory, as the trace store reads them."""
    tables = read_trace(directory)
    return tables.meta, tables.samples, tables.steps


@dataclass
class Trace:
    """One trace directory.

    Attributes:
        directory: where it was read from.
        meta: the contents of meta.json.
        samples: one row per finished sample, in the order they were written.
        steps: one row per sample x generated step, ordered by sample (as in ``samples``) then step.
    """

    directory: Path
    meta: dict
    samples: pd.DataFrame
    steps: pd.DataFrame
    _matrices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @cached_property
    def image_tokens(self) -> pd.DataFrame:
        """The trace's ``image_tokens/`` table (``--image-tokens``; empty without it): one row per finished
        sample x image token (docs/trace-format.md)."""
        return read_image_tokens(self.directory)

    @cached_property
    def n_layers(self) -> int:
        """L, the number of decoder layers (lens layers are 0..L)."""
        if "n_layers" in self.meta:
            return int(self.meta["n_layers"])
        return len(self.steps["prob"].iloc[0]) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.steps)

    @property
    def sample_ids(self) -> list[str]:
        return list(self.samples["sample_id"])

    @property
    def label(self) -> str:
        """A short name for figures: the model and the directory."""
        return f"{self.meta.get('model', '?')} ({self.directory.name})"

    def has(self, column: str) -> bool:
        """Whether every step holds ``column`` (``paper_js`` is only recorded on request)."""
        return column in self.steps and bool(self.steps[column].notna().all())

    def matrix(self, column: str) -> np.ndarray:
        """All steps' vectors of ``column`` stacked: (n_tokens, L+1) or (n_tokens, L), float64."""
        if column not in self._matrices:
            if not self.has(column):
                raise UsageError(
                    f"{self.directory}: the trace has no '{column}' values"
                    + (" (trace with --lens raw, or with paper_js on)" if column == "paper_js" else "")
                )
            values = self.steps[column].to_numpy()
            self._matrices[column] = np.stack([np.asarray(v, dtype=np.float64) for v in values])
        return self._matrices[column]

    def topk(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids (n_tokens, L+1, k) int64 and their probabilities (n_tokens, L+1, k) float64."""
        if "topk_ids" not in self._matrices:
            self._matrices["topk_ids"] = np.stack(
                [np.stack(layers).astype(np.int64) for layers in self.steps["topk_ids"]]
            )
            self._matrices["topk_probs"] = np.stack(
                [np.stack(layers).astype(np.float64) for layers in self.steps["topk_probs"]]
            )
        return self._matrices["topk_ids"], self._matrices["topk_probs"]

    def token_strings(self) -> dict[int, str]:
        """id -> string of every token the trace itself names: its ``vocab.json`` ({id: string}) if any,
        then a ``topk_tokens`` step column if any, then the emitted tokens (a later source wins)."""
        known: dict[int, str] = {}
        vocab_file = self.directory / "vocab.json"
        if vocab_file.is_file():
            known.update({int(k): v for k, v in json.loads(vocab_file.read_text()).items()})
        if "topk_tokens" in self.steps:
            ids, _ = self.topk()
            for step_ids, step_tokens in zip(ids, self.steps["topk_tokens"], strict=True):
                for layer_ids, layer_tokens in zip(step_ids, step_tokens, strict=True):
                    known.update(zip(layer_ids.tolist(), list(layer_tokens), strict=True))
        known.update(zip(self.steps["token_id"].astype(int), self.steps["token"], strict=True))
        return known

    def rows_of(self, sample_id: str) -> np.ndarray:
        """Row indexes (into ``steps`` and every ``matrix``) of one sample's steps, in step order."""
        rows = np.flatnonzero(self.steps["sample_id"].to_numpy() == sample_id)
        if not len(rows):
            known = ", ".join(self.sample_ids[:5])
            raise InputError(
                f"no sample '{sample_id}' with generated steps in {self.directory} ({known} ...)"
            )
        return rows

    def sample_index(self) -> np.ndarray:
        """(n_tokens,) the position in ``samples`` of each step's sample: the bootstrap's clusters."""
        order = {sample_id: i for i, sample_id in enumerate(self.sample_ids)}
        return self.steps["sample_id"].map(order).to_numpy(dtype=np.int64)

    def prompt_of(self, sample_id: str) -> str:
        row = self.samples.loc[self.samples["sample_id"] == sample_id]
        return str(row["prompt"].iloc[0]) if len(row) else ""

    def hidden(self, sample_id: str) -> HiddenStates | None:
        """The stored hidden states of one sample, None when the trace kept none for it."""
        path = hidden_path(self.directory, sample_id)
        if not path.exists():
            return None
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        states = tensors["hidden"].astype(np.float32)
        steps = tensors.get("steps", np.arange(states.shape[0])).astype(np.int64)
        layers = tensors.get("layers", np.arange(states.shape[1])).astype(np.int64)
        return HiddenStates(states=states, steps=steps, layers=layers)


def load_trace(directory: str | Path) -> Trace:
    """Read a trace directory written by ``evolens trace`` (format: docs/trace-format.md)."""
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        raise InputError(f"{directory}: not a trace directory (no meta.json)")
    try:
        meta, samples, steps = read_tables(directory)
    except (OSError, ValueError) as exc:
        raise InputError(f"{directory}: unreadable trace ({exc})") from exc
    if steps.empty or samples.empty:
        raise InputError(f"{directory}: the trace has no finished samples with generated steps")
    order = {sample_id: i for i, sample_id in enumerate(samples["sample_id"])}
    steps = steps.assign(_order=steps["sample_id"].map(order)).dropna(subset=["_order"])
    steps = steps.sort_values(["_order", "step"], kind="stable").drop(columns="_order").reset_index(drop=True)
    return Trace(directory=directory, meta=meta, samples=samples.reset_index(drop=True), steps=steps)
