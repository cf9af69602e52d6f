"""The image-token lens (``--image-tokens``): the lens read at every image token of the prompt, every layer.

The states come from the batch's first pass (``LayerCapture(keep=...)``); for each sample this module
reads them through the trace's lens, by chunks of tokens so that the (tokens, L+1, V) fp32 logits of one
chunk stay under ``max_bytes``, and keeps the top-1 token of every layer and the probability of each probe
word (a word is read as the first token the model writes it with after a space, ``probe_token``). Each
token's region of the image comes from ``evolens.models.image_regions``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from evolens.errors import UsageError
from evolens.io.image_tokens import ImageTokenRecord
from evolens.lenses.logit import Lens
from evolens.models.image_regions import token_regions
from evolens.models.image_tokens import image_positions, image_token_id
from evolens.models.loaded import LoadedModel

MAX_BYTES = {"cpu": 64 * 2**20}
"""Memory budget of one chunk's logits (and the softmax's temporaries) by device type."""
DEVICE_MAX_BYTES = 512 * 2**20
"""The budget on accelerators: 576 tokens x 33 layers x 32k vocabulary (2.4 GB of fp32 logits) in 6
chunks."""
_WORD = re.compile(r"[a-z][a-z'-]*")


def content_words(text: str) -> list[str]:
    """The distinct content words of ``text`` in order of first use: lower-cased letter runs that are not
    English function words (scikit-learn's list, as ``evolens.analysis.tokens``)."""
    words = (word.strip("'-") for word in _WORD.findall(text.lower()))
    return list(dict.fromkeys(word for word in words if word and word not in ENGLISH_STOP_WORDS))


def probe_token(loaded: LoadedModel, word: str) -> int:
    """The token the model starts ``word`` with after a space, as in running text: the first token of
    "the WORD" after those of "the" (byte-level BPE and SentencePiece tokenizers alike)."""
    tokenizer = loaded.tokenizer
    base = list(tokenizer("the", add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(f"the {word}", add_special_tokens=False)["input_ids"])
    if ids[: len(base)] == base and len(ids) > len(base):
        return int(ids[len(base)])
    alone = list(tokenizer(f" {word}", add_special_tokens=False)["input_ids"])
    if not alone:
        raise UsageError(f"probe word '{word}' gives no token")
    return int(alone[0])


def chunk_tokens(n_lens_layers: int, vocab_size: int, max_bytes: int) -> int:
    """Image tokens per chunk: their fp32 logits, twice over (the softmax's temporaries), fit ``max_bytes``;
    at least one token."""
    return max(1, max_bytes // (2 * 4 * n_lens_layers * vocab_size))


@torch.no_grad()
def read_image_tokens(
    lens: Lens, states: torch.Tensor, probe_ids: Sequence[int], max_bytes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lens at image tokens: states (N, L+1, d) -> top-1 ids (N, L+1) int64 and the probe tokens'
    probabilities (N, L+1, P) fp32 (softmax in fp32 over the whole vocabulary), chunk by chunk."""
    n, layers = states.shape[0], states.shape[1]
    vocab = lens.unembed.vocab_size
    device = lens.unembed.device
    ids = torch.tensor(list(probe_ids), dtype=torch.long, device=device)
    top1 = torch.empty(n, layers, dtype=torch.long)
    probs = torch.empty(n, layers, len(ids), dtype=torch.float32)
    step = chunk_tokens(layers, vocab, max_bytes)
    for start in range(0, n, step):
        logits = lens.layer_logits(states[start : start + step])  # (c, L+1, V) fp32
        top1[start : start + step] = logits.argmax(-1).cpu()
        normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
        probs[start : start + step] = (logits[..., ids] - normaliser).exp().cpu()
        del logits, normaliser
    return top1, probs


class ImageTokenLens:
    """The image-token lens of one trace: the model's image placeholder, the lens, the probe words.

    ``probe_words`` None: each sample's generated content words (``content_words``).
    """

    def __init__(self, loaded: LoadedModel, lens: Lens, probe_words: Sequence[str] | None) -> None:
        if image_token_id(loaded) is None:
            raise UsageError(
                f"--image-tokens: model '{loaded.name}' ({loaded.adapter.family}) has no image tokens in "
                "its sequence (text-only, or the image enters through cross-attention)"
            )
        self.loaded = loaded
        self.lens = lens
        self.probe_words = None if probe_words is None else list(probe_words)
        device = lens.unembed.device.type
        self.max_bytes = MAX_BYTES.get(device, DEVICE_MAX_BYTES)

    def mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the image tokens of a batch's prompts."""
        return image_positions(self.loaded, input_ids)

    def records(
        self,
        kept: torch.Tensor,
        mask: torch.Tensor,
        inputs: Mapping[str, Any],
        image_sizes: Sequence[tuple[int, int] | None],
        texts: Sequence[str],
    ) -> list[ImageTokenRecord]:
        """One record per row: ``kept`` (N, L+1, d), the states at ``mask``'s (B, T) positions in row-major
        order; ``image_sizes`` the (width, height) of the image each row was shown (None: none);
        ``texts`` what each row generated (the default probe words)."""
        counts = mask.sum(1).tolist()
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        attention = inputs.get("attention_mask")
        # left padding: the prompt starts at each row's first attended position
        padding = None if attention is None else attention.bool().int().argmax(1).tolist()
        records = []
        image_index = 0
        for row, text in enumerate(texts):
            words = self.probe_words if self.probe_words is not None else content_words(text)
            ids = [probe_token(self.loaded, word) for word in words]
            states = kept[starts[row] : starts[row + 1]]
            top1, probs = read_image_tokens(self.lens, states, ids, self.max_bytes)
            positions = mask[row].nonzero().flatten().cpu().numpy() - (padding[row] if padding else 0)
            size = image_sizes[row]
            regions = token_regions(self.loaded, inputs, row, image_index, size, int(counts[row]))
            image_index += size is not None
            records.append(
                ImageTokenRecord(
                    positions=positions.astype(np.int32),
                    boxes=regions.boxes,
                    views=regions.views,
                    top1_id=top1.numpy().astype(np.int32),
                    probe_words=list(words),
                    probe_ids=ids,
                    probe_prob=probs.numpy(),
                )
            )
        return records
