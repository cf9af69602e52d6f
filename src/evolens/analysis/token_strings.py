"""Strings for token ids, from the trace alone where possible.

A trace stores the string of every emitted token, but only the ids of the top-k candidates. Strings come
from, in order: what the trace itself names (``Trace.token_strings``: a ``topk_tokens`` step column or a
``vocab.json`` ({id: string}) if the trace has one, the emitted tokens themselves); the tokenizer named by
the trace's metadata when it is on this machine (tokenizer files only, never the model); and otherwise
``#<id>``. The analysis writes the strings of every top-k id into summary.json (``token_strings``), so the
report never needs the tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evolens.io.trace import Trace

log = logging.getLogger(__name__)


class TokenStrings:
    """id -> string for one trace; call it with a token id."""

    def __init__(self, trace: Trace, use_tokenizer: bool = True) -> None:
        self._known: dict[int, str] = trace.token_strings()
        self._decode = _local_tokenizer(trace.meta) if use_tokenizer else None

    def __call__(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._known:
            self._known[token_id] = self._decode(token_id) if self._decode else f"#{token_id}"
        return self._known[token_id]

    def of_ids(self, token_ids: np.ndarray) -> dict[str, str]:
        """{"id": string} for every distinct id in ``token_ids``, ascending by id (summary.json's form)."""
        return {str(int(t)): self(int(t)) for t in np.unique(np.asarray(token_ids))}

    def many(self, token_ids: np.ndarray) -> np.ndarray:
        """Strings for an array of ids, same shape."""
        flat = [self(t) for t in np.asarray(token_ids).ravel()]
        return np.asarray(flat, dtype=object).reshape(np.shape(token_ids))


def _local_tokenizer(meta: dict) -> Callable[[int], str] | None:
    """A decoder for single ids from the trace's tokenizer, if it can be loaded offline; else None."""
    source = meta.get("tokenizer") or meta.get("model")
    if not source:
        return None
    try:
        if source in ("demo", "demo-prior", "demo-text"):
            from evolens.models.demo.decoder import decoder_cache_dir

            source = str(decoder_cache_dir())
        if not Path(source).exists() and "/" not in source:
            return None
        tokenizer = _fast_tokenizer(source)
    except Exception as exc:  # any failure just means ids are shown as numbers
        log.debug("no tokenizer for %s: %s", source, exc)
        return None
    return lambda token_id: str(tokenizer.decode([token_id], skip_special_tokens=False))


def _fast_tokenizer(source: str) -> Any:
    """The tokenizer at ``source`` (a local folder or a cached hub id): its ``tokenizer.json`` read by the
    ``tokenizers`` library (light: neither torch nor transformers), else transformers' AutoTokenizer."""
    folder = Path(source)
    path = folder / "tokenizer.json" if folder.is_dir() else None
    if path is None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "tokenizer.json")
        path = Path(cached) if isinstance(cached, str) else None
    if path is not None and path.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=True)
