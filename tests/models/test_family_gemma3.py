"""Gemma 3 multimodal (``Gemma3ForConditionalGeneration``): tiny SigLIP + pooled projector + Gemma 3 decoder.

What sets Gemma 3 apart and is checked here: the chat template's ``<start_of_image>`` expands to
"\\n\\n<boi>" + image tokens + "<eoi>\\n\\n"; image tokens attend bidirectionally (``token_type_ids``);
sliding-window layers (window 8, shorter than the prompt) mix with global ones under left padding;
embeddings are scaled by sqrt(d) before decoder layer 0; the final norm is x * (1 + w). And this class does
not soft-cap its logits even when the config asks for it, so the adapter declares no cap.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from PIL import Image
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
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
    tokenizer_with_named_tokens,
)

SIDE, PATCH = 28, 7  # 4x4 patches, average-pooled to 2x2 = 4 image tokens
IMAGE_TOKENS = 4
SOFTCAP = 0.5  # in the config; the tiny model's logits go well past it, uncapped

# Gemma's template shape: <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_tiny_gemma3(smollm2_tokenizer) -> tuple[Gemma3ForConditionalGeneration, Gemma3Processor]:
    tokenizer = tokenizer_with_named_tokens(
        smollm2_tokenizer,
        GEMMA3_CHAT_TEMPLATE,
        image_token="<image_soft_token>",
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    text = tiny_decoder_kwargs(
        tokenizer,
        num_hidden_layers=3,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        final_logit_softcapping=SOFTCAP,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config={
            "model_type": "siglip_vision_model",
            **tiny_vision_kwargs(SIDE, PATCH),
            "vision_use_head": False,
        },
        mm_tokens_per_image=IMAGE_TOKENS,
        image_token_index=tokenizer.image_token_id,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        tie_word_embeddings=False,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": SIDE, "width": SIDE})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS,
    )
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(config), processor


@pytest.fixture(scope="module")
def tiny_gemma3(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    model, processor = build_tiny_gemma3(smollm2_tokenizer)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("gemma3"), device, dtype)


def test_loads_with_the_gemma3_adapter(tiny_gemma3: LoadedModel) -> None:
    assert tiny_gemma3.adapter.family == "gemma3"
    assert tiny_gemma3.n_layers == 3
    assert tiny_gemma3.final_norm is tiny_gemma3.model.model.language_model.norm


def test_passes_every_verify_check(tiny_gemma3: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_gemma3, test_image)
    assert report.ok, report.results


def test_image_expands_between_begin_and_end_of_image(
    tiny_gemma3: LoadedModel, test_image: Image.Image
) -> None:
    inputs = tiny_gemma3.build_inputs(["Describe this image."], [test_image])
    config = tiny_gemma3.model.config
    ids = inputs["input_ids"][0].tolist()
    begin = ids.index(config.boi_token_id)
    assert ids[begin + 1 : begin + 1 + IMAGE_TOKENS] == [config.image_token_id] * IMAGE_TOKENS
    assert ids[begin + 1 + IMAGE_TOKENS] == config.eoi_token_id
    is_image = inputs["input_ids"] == config.image_token_id
    assert torch.equal(inputs["token_type_ids"].bool(), is_image)


def test_final_norm_is_one_plus_w_and_embeddings_are_scaled(
    tiny_gemma3: LoadedModel, test_image: Image.Image
) -> None:
    """Layer 0's input at text positions is embedding_row * sqrt(d); the final norm multiplies by (1 + w)."""
    loaded = tiny_gemma3
    inputs = loaded.build_inputs(["Describe this image."], [test_image])
    entering: list[torch.Tensor] = []
    handle = loaded.decoder_layers[0].register_forward_pre_hook(lambda _m, args: entering.append(args[0][0]))
    try:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    ids = inputs["input_ids"][0]
    is_text = ids != loaded.model.config.image_token_id
    d = loaded.text_config.hidden_size
    table = loaded.embed_tokens.weight
    expected = table[ids[is_text]] * torch.tensor(math.sqrt(d), dtype=table.dtype)
    torch.testing.assert_close(entering[0][is_text], expected)

    h = torch.randn(5, d, dtype=table.dtype, device=table.device)
    w = loaded.final_norm.weight
    rms = h.float().pow(2).mean(-1, keepdim=True).add(loaded.text_config.rms_norm_eps).rsqrt()
    with torch.inference_mode():
        normed = loaded.final_norm(h)
    torch.testing.assert_close(normed.float(), (h.float() * rms * (1 + w.float())), rtol=1e-2, atol=1e-2)


def test_final_logit_softcapping_is_ignored_by_this_class(
    tiny_gemma3: LoadedModel, test_image: Image.Image
) -> None:
    """Should transformers start capping here, this fails: then declare ``logit_softcap`` in gemma3.py."""
    assert tiny_gemma3.text_config.final_logit_softcapping == SOFTCAP
    assert tiny_gemma3.logit_softcap is None
    inputs = dict(tiny_gemma3.build_inputs(["Describe this image."], [test_image]))
    with torch.inference_mode():
        assert tiny_gemma3.model(**inputs).logits.abs().max() > SOFTCAP
    capped = dataclasses.replace(tiny_gemma3.adapter, logit_softcap="final_logit_softcapping")
    wrong = LoadedModel("capped", tiny_gemma3.model, tiny_gemma3.tokenizer, None, capped)
    with pytest.raises(AdapterCheckError):
        check_adapter(wrong, inputs)


def test_batch_with_sliding_window_equals_one_by_one(
    tiny_gemma3: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    prompts = ["Describe this image.", "What colour is the square in the middle of the picture?"]
    inputs = tiny_gemma3.build_inputs(prompts, [test_image, second_image])
    assert count_tokens(inputs["input_ids"], tiny_gemma3.model.config.image_token_id) == [IMAGE_TOKENS] * 2
    assert inputs["input_ids"].shape[1] > 2 * tiny_gemma3.text_config.sliding_window
    assert_batch_equals_one_by_one(tiny_gemma3, prompts, [test_image, second_image])
