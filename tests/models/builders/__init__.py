"""The table of tiny random models the conformance suite runs over: one row per family (or variant).

Each row says how to build the model and its processor (locally, no hub) and what ``load_model`` must make
of it: the adapter family, the decoder layer classes, the final norm and unembedding paths, the logit cap.
Adding a family to evolens means adding a builder module here and a row to ``TINY_FAMILIES``; the shared
checks in tests/models/test_conformance.py then run on it, and family specifics go to test_family_<name>.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
from _pytest.mark import MarkDecorator
from torch import nn

from tests.models.builders import (
    causal_lm,
    gemma3,
    idefics3,
    instructblip,
    llava,
    llava_next,
    llava_onevision,
    mllama,
    paligemma,
    qwen_vl,
)

Builder = Callable[[Any], tuple[nn.Module, Any]]
"""SmolLM2's tokenizer -> (the tiny random model, its processor or, for text-only models, its tokenizer)."""

TEXT_PROMPTS = ("Name a colour.", "What is the capital of France? Answer in one word, please.")
IMAGE_PROMPTS = ("Describe this image.", "What colour is it?")
QWEN_PROMPTS = ("Describe this image.", "What colour is the square in the middle?")


@dataclass(frozen=True)
class TinyFamily:
    """One tiny random model of a family, and what its adapter must resolve to once loaded.

    Attributes:
        id: the test id, the adapter family or "family/variant" (several classes or decoders per family).
        build: makes the model and processor; the conformance fixtures save and reload them.
        layer_kinds: class name of each decoder layer, in order (so n_layers = len(layer_kinds)).
        final_norm: dotted path of the final norm in the loaded model.
        unembedding: dotted path of the output projection.
        logit_softcap: the cap the adapter must declare (read from the config), None for none.
        vision: whether the model takes images (text-only models have no processor).
        batch_prompts: two prompts of different lengths, for the left-padded batch.
        pads_left: the processor pads each row on its left (InstructBLIP pads between its query tokens and
            the prompt instead).
        new_tokens: tokens generated per row in the batch test.
    """

    id: str
    build: Builder
    layer_kinds: tuple[str, ...]
    final_norm: str = "model.language_model.norm"
    unembedding: str = "lm_head"
    logit_softcap: float | None = None
    vision: bool = True
    batch_prompts: tuple[str, str] = IMAGE_PROMPTS
    pads_left: bool = True
    new_tokens: int = 4

    @property
    def family(self) -> str:
        """The adapter family: the id up to its "/"."""
        return self.id.partition("/")[0]

    @property
    def verify_prompt(self) -> str:
        """The prompt ``verify_model``'s checks run on."""
        return "Describe this image." if self.vision else "Name three colours."


def text_only(id: str, build: Builder, layer_kinds: tuple[str, ...], **fields: Any) -> TinyFamily:
    """A text-only row: no images, the decoder at ``model``, text prompts."""
    return TinyFamily(
        id, build, layer_kinds, final_norm="model.norm", vision=False, batch_prompts=TEXT_PROMPTS, **fields
    )


LLAMA_LAYERS = ("LlamaDecoderLayer",) * 2
PALIGEMMA_PROMPTS = ("caption en", "answer en what colour is the square in the middle?")

TINY_FAMILIES: tuple[TinyFamily, ...] = (
    text_only("causal_lm/llama", partial(causal_lm.build_causal_lm, "LlamaForCausalLM"), LLAMA_LAYERS),
    text_only(
        "causal_lm/mistral",
        partial(causal_lm.build_causal_lm, "MistralForCausalLM"),
        ("MistralDecoderLayer",) * 2,
    ),
    text_only(
        "causal_lm/qwen2", partial(causal_lm.build_causal_lm, "Qwen2ForCausalLM"), ("Qwen2DecoderLayer",) * 2
    ),
    text_only(
        "causal_lm/qwen3", partial(causal_lm.build_causal_lm, "Qwen3ForCausalLM"), ("Qwen3DecoderLayer",) * 2
    ),
    TinyFamily(
        "gemma3",
        gemma3.build_gemma3,
        ("Gemma3DecoderLayer",) * 3,
        batch_prompts=("Describe this image.", "What colour is the square in the middle of the picture?"),
    ),
    text_only(
        "gemma3_text", gemma3.build_gemma3_text, ("Gemma3DecoderLayer",) * 3, logit_softcap=gemma3.SOFTCAP
    ),
    TinyFamily(
        "idefics3/idefics3",
        partial(idefics3.build_idefics3, "Idefics3"),
        LLAMA_LAYERS,
        final_norm="model.text_model.norm",
    ),
    TinyFamily(
        "idefics3/smolvlm",
        partial(idefics3.build_idefics3, "SmolVLM"),
        LLAMA_LAYERS,
        final_norm="model.text_model.norm",
    ),
    TinyFamily(
        "instructblip",
        instructblip.build_instructblip,
        LLAMA_LAYERS,
        final_norm="language_model.model.norm",
        unembedding="language_model.lm_head",
        batch_prompts=("Describe this image in detail.", "What colour is it?"),
        pads_left=False,
    ),
    TinyFamily(
        "llava",
        llava.build_tiny_llava,
        LLAMA_LAYERS,
        batch_prompts=("Describe this image.", "What colour is the square in the middle?"),
        new_tokens=5,
    ),
    TinyFamily("llava_next", llava_next.build_llava_next, LLAMA_LAYERS),
    TinyFamily("llava_onevision", llava_onevision.build_llava_onevision, ("Qwen2DecoderLayer",) * 2),
    TinyFamily(
        "mllama",
        mllama.build_mllama,
        (
            "MllamaSelfAttentionDecoderLayer",
            "MllamaCrossAttentionDecoderLayer",
            "MllamaSelfAttentionDecoderLayer",
        ),
    ),
    TinyFamily(
        "paligemma/gemma",
        partial(paligemma.build_paligemma, "gemma"),
        ("GemmaDecoderLayer",) * 2,
        batch_prompts=PALIGEMMA_PROMPTS,
    ),
    TinyFamily(
        "paligemma/gemma2",
        partial(paligemma.build_paligemma, "gemma2"),
        ("Gemma2DecoderLayer",) * 2,
        logit_softcap=paligemma.SOFTCAP,
        batch_prompts=PALIGEMMA_PROMPTS,
    ),
    # a longer second prompt: with IMAGE_PROMPTS, Qwen2/2.5's rows (9 and 8 image tokens) are equally long
    TinyFamily("qwen2_vl", qwen_vl.build_qwen2_vl, ("Qwen2VLDecoderLayer",) * 3, batch_prompts=QWEN_PROMPTS),
    TinyFamily(
        "qwen2_5_vl", qwen_vl.build_qwen2_5_vl, ("Qwen2_5_VLDecoderLayer",) * 3, batch_prompts=QWEN_PROMPTS
    ),
    TinyFamily(
        "qwen3_vl", qwen_vl.build_qwen3_vl, ("Qwen3VLTextDecoderLayer",) * 3, batch_prompts=QWEN_PROMPTS
    ),
)


def tiny_families(*families: str, vision: bool | None = None, capped: bool | None = None) -> list[TinyFamily]:
    """Rows of ``TINY_FAMILIES``: of the given adapter families (all when none given), with or without
    images (``vision``), with or without a logit soft-cap (``capped``)."""
    rows = [row for row in TINY_FAMILIES if not families or row.family in families]
    if vision is not None:
        rows = [row for row in rows if row.vision == vision]
    if capped is not None:
        rows = [row for row in rows if (row.logit_softcap is not None) == capped]
    if not rows:
        raise ValueError(f"no tiny model matches families={families} vision={vision} capped={capped}")
    return rows


DEVICE_DTYPES: tuple[tuple[str, str, torch.dtype], ...] = (
    ("cpu-fp32", "cpu", torch.float32),
    ("cuda-bf16", "cuda", torch.bfloat16),
)
"""(id, device, dtype) every row runs on; CUDA ones are skipped without a GPU."""


def over(rows: Iterable[TinyFamily]) -> MarkDecorator:
    """``@over(rows)``: run a test once per row and device, as ``family`` and ``device_dtype`` arguments.

    Test ids name the row, then the device: ``test_x[llava-cpu-fp32]``, ``test_x[causal_lm/qwen3-cuda-bf16]``
    (``scripts/model_matrix.py`` reads the family and device from them).
    """
    needs_cuda = [
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ]
    params = [
        pytest.param(
            row, (device, dtype), id=f"{row.id}-{device_id}", marks=needs_cuda if device == "cuda" else []
        )
        for row in rows
        for device_id, device, dtype in DEVICE_DTYPES
    ]
    return pytest.mark.parametrize(("family", "device_dtype"), params)
