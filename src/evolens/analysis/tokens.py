"""Token kinds: content words, function words and punctuation, words copied from the prompt, specials.

Generated tokens are grouped into words first (a token that starts with whitespace, or follows a
non-letter, begins a new word; sub-word pieces join the word before them), and each token gets the
kind of its word:

- ``special``: a control token (``<|im_end|>``, ``</s>``) or an empty string;
- ``function``: a word in scikit-learn's ENGLISH_STOP_WORDS, or one with no letter or digit (punctuation);
- ``copied``: any other word that also appears in the prompt (case-insensitive);
- ``content``: everything else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from evolens.vocabulary import TOKEN_KINDS

if TYPE_CHECKING:
    from evolens.io.trace import Trace

KINDS = TOKEN_KINDS
_SPECIAL = re.compile(r"^\s*(<\|[^|]*\|>|</?s>|<[a-z_]+>)\s*$")
_WORD_CHARS = re.compile(r"[A-Za-z0-9]")
_PROMPT_WORDS = re.compile(r"[A-Za-z0-9']+")


def is_special(token: str) -> bool:
    """A control token such as ``<|im_end|>``, or the empty string."""
    return token == "" or bool(_SPECIAL.match(token))


def words_of(tokens: Sequence[str]) -> list[tuple[str, int]]:
    """For each token, (the word it belongs to, the index of that word) reconstructed from the pieces."""
    groups: list[list[int]] = []
    for index, token in enumerate(tokens):
        starts_word = (
            not groups
            or is_special(token)
            or token[:1].isspace()
            or not _WORD_CHARS.match(token[:1])
            or not _WORD_CHARS.search(tokens[groups[-1][-1]][-1:] or " ")
        )
        if starts_word:
            groups.append([index])
        else:
            groups[-1].append(index)
    result: list[tuple[str, int]] = [("", 0)] * len(tokens)
    for word_index, group in enumerate(groups):
        word = "".join(tokens[i] for i in group).strip()
        for i in group:
            result[i] = (word, word_index)
    return result


def token_kinds(tokens: Sequence[str], prompt: str) -> list[str]:
    """The kind (one of ``KINDS``) of every generated token of one sample, in order."""
    prompt_words = {w.lower() for w in _PROMPT_WORDS.findall(prompt)}
    kinds = []
    for token, (word, _) in zip(tokens, words_of(tokens), strict=True):
        core = word.lower().strip(".,;:!?\"'()[]")
        if is_special(token):
            kinds.append("special")
        elif not _WORD_CHARS.search(word) or core in ENGLISH_STOP_WORDS:
            kinds.append("function")
        elif core in prompt_words:
            kinds.append("copied")
        else:
            kinds.append("content")
    return kinds


def kinds_for_trace(trace: Trace) -> np.ndarray:
    """(n_tokens,) the kind of every step of a trace, aligned with ``trace.steps``."""
    kinds = np.empty(trace.n_tokens, dtype=object)
    for sample_id, rows in trace.steps.groupby("sample_id", sort=False).indices.items():
        kinds[rows] = token_kinds(list(trace.steps["token"].iloc[rows]), trace.prompt_of(sample_id))
    return kinds
