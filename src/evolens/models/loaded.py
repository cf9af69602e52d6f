"""``LoadedModel``: one object that gives everything evolens needs from a model, whatever its family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature

from evolens.models.adapter import ModelAdapter
from evolens.models.inputs import build_inputs
from evolens.models.readout import Unembed

BUNDLED_LENS = "bundled_lens"
SCOPE = "scope"
"""``info`` key of a one-line note on what the model can be expected to see (shown when it loads)."""
"""``LoadedModel.info`` key: the folder of the model's own tuned lens (``--lens tuned``), if any."""


@dataclass
class LoadedModel:
    """A model plus its tokenizer/processor and the adapter that says where its parts are.

    Attributes:
        name: what the user asked for ("demo", a hub id or a local path).
        model: the full model (a transformers ``PreTrainedModel`` or the demo's ``DemoVLM``; typed ``Any``
            because its ``generate``, ``config`` and ``generation_config`` are not ``nn.Module`` API).
        tokenizer: the text tokenizer (``processor.tokenizer`` for VLMs).
        processor: the multimodal processor, None for text-only models.
        adapter: the family's declarative adapter.
        revision: model revision/commit when known, else None.
        info: what loading learned (the adapter check's error; ``BUNDLED_LENS``: the model's tuned lens;
            ``SCOPE``: what the model knows, e.g. the demo's shapes world).
    """

    name: str
    model: Any
    tokenizer: Any
    processor: Any | None
    adapter: ModelAdapter
    revision: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def bundled_lens(self) -> Path | None:
        """The folder of the tuned lens that comes with the model (``--lens tuned``), None when none does."""
        folder = self.info.get(BUNDLED_LENS)
        return None if folder is None else Path(folder)

    @cached_property
    def decoder_layers(self) -> nn.ModuleList:
        """The decoder layers in order; ``len`` is L."""
        return self.adapter.resolve(self.model, "decoder_layers")  # type: ignore[return-value]

    @cached_property
    def final_norm(self) -> nn.Module:
        """The norm applied to the last decoder layer's output before the unembedding."""
        return self.adapter.resolve(self.model, "final_norm")

    @cached_property
    def unembedding(self) -> nn.Module:
        """The output projection: (..., d_model) -> (..., vocab)."""
        return self.adapter.resolve(self.model, "unembedding")

    @cached_property
    def embed_tokens(self) -> nn.Module:
        """The token embedding: (...,) int -> (..., d_model)."""
        return self.adapter.resolve(self.model, "embed_tokens")

    @cached_property
    def unembed(self) -> Unembed:
        """The readout in fp32 (final norm + unembedding, an fp32 copy for half-precision models)."""
        return Unembed.from_model(self)

    @property
    def n_layers(self) -> int:
        """L, the number of decoder layers; lens layers are 0..L (0 = input embeddings)."""
        return len(self.decoder_layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        weight = self.unembedding.weight
        assert isinstance(weight, torch.Tensor)
        return weight.dtype

    @cached_property
    def text_config(self) -> Any:
        """The decoder's config (the text sub-config of a VLM)."""
        config = self.model.config
        return getattr(config, self.adapter.text_config, config) if self.adapter.text_config else config

    @property
    def logit_softcap(self) -> float | None:
        """Final logit soft-cap value (logits = cap * tanh(logits / cap)), None if the family has none."""
        if self.adapter.logit_softcap is None:
            return None
        return getattr(self.text_config, self.adapter.logit_softcap, None)

    @property
    def eos_token_ids(self) -> list[int]:
        """Token ids that end generation."""
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos or [])

    def build_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None] | None = None
    ) -> BatchFeature:
        """A left-padded batch for ``generate``: input_ids/attention_mask (B, T) plus pixel tensors."""
        return build_inputs(self, prompts, images).to(self.device)

    def generation_kwargs(
        self,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
    ) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` that fully specify the decoding."""
        pad = self.tokenizer.pad_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": pad if pad is not None else self.eos_token_ids[0],
            "eos_token_id": self.eos_token_ids,
        }
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    @torch.inference_mode()
    def generate(self, inputs: BatchFeature, **generation: Any) -> torch.Tensor:
        """Generate and return only the new token ids, shape (B, T_new), padded with the pad id.

        ``generation`` takes ``generation_kwargs`` arguments plus extra ``generate`` kwargs (e.g. streamer).
        """
        known = {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k"}
        kwargs = self.generation_kwargs(**{k: v for k, v in generation.items() if k in known})
        kwargs.update({k: v for k, v in generation.items() if k not in known})
        output = self.model.generate(**inputs, **kwargs)
        sequences = output.sequences if hasattr(output, "sequences") else output
        return sequences[:, inputs["input_ids"].shape[1] :]

    def decode(self, token_ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Token ids -> text, stopping at the first end-of-sequence token."""
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        eos = set(self.eos_token_ids)
        cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        return self.tokenizer.decode(ids[:cut], skip_special_tokens=skip_special_tokens).strip()

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        """Each token id as its own decoded string (for figure labels)."""
        return [self.tokenizer.decode([int(t)]) for t in token_ids]
