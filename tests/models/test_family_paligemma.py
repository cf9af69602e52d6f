"""PaliGemma (``PaliGemmaForConditionalGeneration``): tiny SigLIP + projector + Gemma (1) or Gemma 2 decoder.

PaliGemma has no chat template: the adapter's prompt template puts ``<image>`` first and the processor adds
one image token per patch, then BOS, the prompt and "\\n", plus ``token_type_ids``. PaliGemma 2's Gemma-2
decoder soft-caps its logits; the adapter declares it, so the lens repeats the cap.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from PIL import Image
from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessorPil,
)

from evolens.errors import AdapterCheckError
from evolens.models import LoadedModel
from evolens.models.check import check_adapter
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_batch_equals_one_by_one,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tiny_vision_kwargs,
)

SIDE, PATCH = 28, 7
IMAGE_TOKENS = (SIDE // PATCH) ** 2
SOFTCAP = 2.0  # small enough that the tiny model's raw logits exceed it


def build_tiny_paligemma(
    smollm2_tokenizer, decoder: str
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """``decoder`` "gemma" (PaliGemma 1, untied head) or "gemma2" (PaliGemma 2: tied, logit soft-cap)."""
    image_processor = SiglipImageProcessorPil(size={"height": SIDE, "width": SIDE})
    image_processor.image_seq_length = IMAGE_TOKENS
    tokenizer = copy.deepcopy(smollm2_tokenizer)  # the processor adds <image>, <locNNNN>, <segNNN> to it
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = tiny_decoder_kwargs(tokenizer, model_type=decoder, head_dim=16, num_key_value_heads=1)
    if decoder == "gemma2":
        text.update(final_logit_softcapping=SOFTCAP, query_pre_attn_scalar=16, sliding_window=16)
    config = PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            **tiny_vision_kwargs(SIDE, PATCH),
            "vision_use_head": False,
        },
        text_config=text,
        image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=64,
        hidden_size=64,
        tie_word_embeddings=decoder == "gemma2",
    )
    torch.manual_seed(0)
    return PaliGemmaForConditionalGeneration(config), processor


@pytest.fixture(scope="module")
def tiny_paligemma(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    model, processor = build_tiny_paligemma(smollm2_tokenizer, "gemma")
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("paligemma"), device, dtype)


@pytest.fixture(scope="module")
def tiny_paligemma2(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    model, processor = build_tiny_paligemma(smollm2_tokenizer, "gemma2")
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("paligemma2"), device, dtype)


def test_loads_with_the_paligemma_adapter(tiny_paligemma: LoadedModel) -> None:
    assert tiny_paligemma.adapter.family == "paligemma"
    assert tiny_paligemma.final_norm is tiny_paligemma.model.model.language_model.norm
    assert type(tiny_paligemma.decoder_layers[0]).__name__ == "GemmaDecoderLayer"
    assert tiny_paligemma.logit_softcap is None


def test_passes_every_verify_check(tiny_paligemma: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_paligemma, test_image)
    assert report.ok, report.results


def test_prompt_layout_is_image_tokens_bos_prompt_newline(
    tiny_paligemma: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_paligemma.build_inputs(["caption en"], [test_image])
    tokenizer = tiny_paligemma.tokenizer
    ids = inputs["input_ids"][0].tolist()
    image_token_id = tiny_paligemma.model.config.image_token_id
    assert ids[:IMAGE_TOKENS] == [image_token_id] * IMAGE_TOKENS
    assert ids[IMAGE_TOKENS] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[IMAGE_TOKENS + 1 :]) == "caption en\n"
    assert inputs["token_type_ids"].shape == inputs["input_ids"].shape
    assert "labels" not in inputs  # the processor's training targets are no generation input
    assert tuple(inputs["pixel_values"].shape) == (1, 3, SIDE, SIDE)


def test_batch_of_two_images_equals_one_by_one(
    tiny_paligemma: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    prompts = ["caption en", "answer en what colour is the square in the middle?"]
    inputs = tiny_paligemma.build_inputs(prompts, [test_image, second_image])
    assert count_tokens(inputs["input_ids"], tiny_paligemma.model.config.image_token_id) == [IMAGE_TOKENS] * 2
    assert inputs["attention_mask"][0, 0] == 0, "the shorter prompt must be left-padded"
    assert_batch_equals_one_by_one(tiny_paligemma, prompts, [test_image, second_image])


def test_paligemma2_lens_repeats_the_logit_softcap(
    tiny_paligemma2: LoadedModel, test_image: Image.Image
) -> None:
    assert type(tiny_paligemma2.decoder_layers[0]).__name__ == "Gemma2DecoderLayer"
    assert tiny_paligemma2.logit_softcap == SOFTCAP
    report = verify_model(tiny_paligemma2, test_image)
    assert report.ok, report.results
    inputs = dict(tiny_paligemma2.build_inputs(["caption en"], [test_image]))
    with torch.inference_mode():
        logits = tiny_paligemma2.model(**inputs).logits
    assert logits.abs().max() < SOFTCAP
    uncapped = dataclasses.replace(tiny_paligemma2.adapter, logit_softcap=None)
    wrong = LoadedModel("uncapped", tiny_paligemma2.model, tiny_paligemma2.tokenizer, None, uncapped)
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong, inputs)
