"""Did the *correct* word lead, and was it overtaken? Layer by layer, from a trace's top-1 tokens.

A mention's correct alternatives (``evolens.eval.mentions``) are words; the lens' top-1 token at layer l is
an id, whose string comes from the trace (or the tokenizer, ``analysis.token_strings``). The top-1 token
*is* a correct word when its text, stripped and lower-cased, is a whole alternative or the start of one at
least 3 characters long (a word's first token: " circ" for "circle"; "b" alone never counts).

- ``correct_leads``: (n, L+1) 1.0 where a correct alternative is top-1 at layer l, 0.0 where not, NaN for a
  mention whose ground truth offers no alternative (MSCOCO, AMBER).
- ``overtaken`` at layer m (the first mutation layer): a *hallucinated* mention whose correct alternative
  was top-1 at layer m-1 and whose own word is top-1 at the last layer. 1.0 or 0.0; a faithful mention
  is 0.0 (the correct word is what it emitted); a hallucinated one without alternatives is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MIN_PREFIX = 3


def is_word_start(token: str, word: str) -> bool:
    """Whether ``token`` (a decoded token) is ``word`` or its first >= 3 characters, case and spaces aside."""
    text, word = token.strip().lower(), word.lower()
    return bool(text) and (text == word or (len(text) >= MIN_PREFIX and word.startswith(text)))


def correct_leads(
    top1: np.ndarray, alternatives: Sequence[tuple[str, ...]], string_of: Callable[[int], str]
) -> np.ndarray:
    """(n, L+1) whether a correct alternative is the top-1 token, from ``top1`` (n, L+1) token ids."""
    leads = np.full(top1.shape, np.nan)
    cache: dict[int, str] = {}
    for i, words in enumerate(alternatives):
        if not words:
            continue
        for layer, token_id in enumerate(top1[i].tolist()):
            if token_id not in cache:
                cache[token_id] = string_of(token_id)
            leads[i, layer] = float(any(is_word_start(cache[token_id], w) for w in words))
    return leads


def overtaken(leads: np.ndarray, hallucinated: np.ndarray, final_rank: np.ndarray, layer: int) -> np.ndarray:
    """(n,) 1.0 when the correct word led at ``layer`` - 1 and the hallucinated word leads at the end.

    Args:
        leads: (n, L+1) from ``correct_leads``; hallucinated: (n,) bool; final_rank: (n,) the emitted
            word's rank at the last layer; layer: the first mutation layer m (>= 1).
    """
    before = leads[:, layer - 1]
    value = np.where(np.isnan(before), np.nan, before * (np.asarray(final_rank) == 0))
    return np.where(hallucinated, value, 0.0)


def last_lead(row: np.ndarray) -> int | None:
    """The last layer at which the correct word led (``correct_leads`` row), None if never."""
    leading = np.flatnonzero(row == 1.0)
    return int(leading[-1]) if len(leading) else None
