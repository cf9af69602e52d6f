"""InstructBLIP (``InstructBlipForConditionalGeneration``): tiny ViT, Q-Former with its own BERT tokenizer,
Llama decoder; no chat template (``processor_prompt``)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import (
    BertTokenizer,
    BlipImageProcessorPil,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
)

from evolens.models import LoadedModel
from evolens.verify import verify_model
from tests.models.conftest import (
    assert_batch_equals_one_by_one,
    count_tokens,
    save_and_load,
    tiny_decoder_kwargs,
    tokenizer_with_tokens,
)

SIDE, PATCH, QUERIES = 24, 6, 8
QFORMER_WORDS = ["describe", "this", "image", "what", "colour", "is", "it", "the", "a", "of", "in"]


def qformer_tokenizer() -> BertTokenizer:
    """A lower-casing WordPiece tokenizer over a tiny vocabulary (stands in for bert-base-uncased)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [
        *specials,
        *QFORMER_WORDS,
        *"abcdefghijklmnopqrstuvwxyz?.,",
        *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
    ]
    return BertTokenizer(vocab={piece: i for i, piece in enumerate(pieces)})


@pytest.fixture(scope="module")
def tiny_instructblip(
    smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype
) -> LoadedModel:
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    qformer_words = qformer_tokenizer()
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=SIDE, patch_size=PATCH,
        ),
        qformer_config=InstructBlipQFormerConfig(
            vocab_size=len(qformer_words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
            pad_token_id=qformer_words.pad_token_id,
        ),
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer)),
        num_query_tokens=QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_words,
        num_query_tokens=QUERIES,
    )
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("instructblip"), device, dtype)


def test_loads_with_the_instructblip_adapter(tiny_instructblip: LoadedModel) -> None:
    assert tiny_instructblip.adapter.family == "instructblip"
    assert tiny_instructblip.final_norm is tiny_instructblip.model.language_model.model.norm
    assert tiny_instructblip.unembedding is tiny_instructblip.model.language_model.lm_head


def test_passes_every_verify_check(tiny_instructblip: LoadedModel, test_image: Image.Image) -> None:
    report = verify_model(tiny_instructblip, test_image)
    assert report.ok, report.results


def test_query_tokens_precede_the_prompt(tiny_instructblip: LoadedModel, test_image: Image.Image) -> None:
    inputs = tiny_instructblip.build_inputs(["What colour is it?"], [test_image])
    image_token_id = tiny_instructblip.model.config.image_token_index
    assert count_tokens(inputs["input_ids"], image_token_id) == [QUERIES]
    assert bool((inputs["input_ids"][0, :QUERIES] == image_token_id).all())
    words = tiny_instructblip.processor.qformer_tokenizer.decode(inputs["qformer_input_ids"][0])
    assert "what colour is it" in words  # the Q-Former reads the instruction too, lower-cased
    assert inputs["pixel_values"].shape == torch.Size([1, 3, SIDE, SIDE])


def test_batch_of_two_images_equals_one_by_one(
    tiny_instructblip: LoadedModel, test_image: Image.Image, second_image: Image.Image
) -> None:
    assert_batch_equals_one_by_one(
        tiny_instructblip,
        ["Describe this image in detail.", "What colour is it?"],
        [test_image, second_image],
    )
