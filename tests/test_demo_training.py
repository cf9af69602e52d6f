"""Training data, loss, warm start and LoRA of the demo VLM (with a tiny random decoder, so it is fast)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from scripts.demo.training import (
    IGNORE,
    alignment_targets,
    answer_loss,
    attach_lora,
    cell_words,
    chat_messages,
    lora_factors,
    make_batch,
    tokenize_conversation,
)
from transformers import PreTrainedModel

from evolens.data.shapes.text import conversation
from evolens.data.shapes.world import sample_scene
from evolens.errors import ModelLoadError
from evolens.models.demo.lora import LoraSettings, merge_lora
from evolens.models.demo.model import DemoVLM, Projector
from evolens.models.demo.processor import DemoProcessor
from evolens.models.demo.vision import VisionConfig, VisionEncoder, feature_dim
from tests.models.builders.causal_lm import tiny_causal_lm

CONFIG = VisionConfig(tokens_per_cell=3)


@pytest.fixture(scope="module")
def processor(smollm2_tokenizer) -> DemoProcessor:
    return DemoProcessor(smollm2_tokenizer, CONFIG.n_tokens)


@pytest.fixture(scope="module")
def tiny_demo(smollm2_tokenizer, processor: DemoProcessor) -> DemoVLM:
    decoder = tiny_causal_lm("LlamaForCausalLM", smollm2_tokenizer).eval()  # hidden 64, 2 layers
    projector = Projector(feature_dim(CONFIG), 64, 32, CONFIG.tokens_per_cell)
    return DemoVLM(VisionEncoder(CONFIG), projector, decoder, processor.image_token_id)


def tiny_decoder(tokenizer: Any) -> PreTrainedModel:
    return tiny_causal_lm("LlamaForCausalLM", tokenizer, seed=1, intermediate_size=96).eval()


def test_labels_are_exactly_the_answers(processor: DemoProcessor) -> None:
    rng = random.Random(0)
    for seed in range(20):
        turns = conversation(sample_scene(seed), rng, n_turns=3)
        ids, labels = tokenize_conversation(processor, turns)
        answer_ids = [t for t in labels if t != IGNORE]
        expected = "".join(t.answer + "<|im_end|>" for t in turns)
        assert processor.tokenizer.decode(answer_ids) == expected
        assert ids.count(processor.image_token_id) == CONFIG.n_tokens


def test_training_prompt_is_the_inference_prompt(processor: DemoProcessor) -> None:
    turns = conversation(sample_scene(3), random.Random(1), n_turns=2)
    inference = processor.apply_chat_template(chat_messages(turns[:1], with_answers=False))
    training = processor.apply_chat_template(chat_messages(turns), add_generation_prompt=False)
    assert training.startswith(inference + turns[0].answer + "<|im_end|>")


def test_split_prefix_loss_equals_full_sequence_loss(processor: DemoProcessor, tiny_demo: DemoVLM) -> None:
    features = torch.randn(3, 2, CONFIG.n_cells, feature_dim(CONFIG))
    batch = make_batch(processor, features, range(40, 43), [0, 1, 2], random.Random(2), 3, copies=[1, 0, 1])
    assert torch.equal(batch.image_features, features[[0, 1, 2], [1, 0, 1]])
    with torch.no_grad():
        loss = answer_loss(tiny_demo, batch).item()
        total, count = 0.0, 0
        for row in range(3):
            keep = batch.attention_mask[row].bool()
            ids = torch.cat([batch.prefix_ids, batch.input_ids[row][keep]])[None]
            labels = torch.cat([torch.full_like(batch.prefix_ids, IGNORE), batch.labels[row][keep]])
            logits = tiny_demo(
                inputs_embeds=tiny_demo.embed(ids, image_features=batch.image_features[row : row + 1])
            ).logits
            targets = labels[1:]
            chosen = targets != IGNORE
            total += F.cross_entropy(logits[0, :-1][chosen], targets[chosen], reduction="sum").item()
            count += int(chosen.sum())
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_only_the_projector_gets_gradients(processor: DemoProcessor, tiny_demo: DemoVLM) -> None:
    tiny_demo.decoder.requires_grad_(False)
    features = torch.randn(2, 1, CONFIG.n_cells, feature_dim(CONFIG))
    batch = make_batch(processor, features, range(50, 52), [0, 1], random.Random(3), n_turns=2)
    tiny_demo.projector.zero_grad()
    answer_loss(tiny_demo, batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_demo.projector.parameters())
    assert all(p.grad is None for p in tiny_demo.decoder.parameters())


def test_projector_makes_a_cells_tokens_from_its_features_alone() -> None:
    projector = Projector(20, 16, 8, tokens_per_cell=3)
    features = torch.randn(2, 9, 20)
    tokens = projector(features)
    assert tokens.shape == (2, 27, 16)
    changed = features.clone()
    changed[1, 4] += 1.0
    moved = (projector(changed) - tokens).abs().sum(-1) > 0
    assert moved.nonzero().tolist() == [[1, 12], [1, 13], [1, 14]]


def test_three_token_warm_start_targets_are_the_cell_words_embeddings(
    processor: DemoProcessor, tiny_demo: DemoVLM
) -> None:
    targets = alignment_targets(tiny_demo, processor.tokenizer, range(7, 9), CONFIG.grid, 3)
    assert targets.shape == (2, CONFIG.n_tokens, 64)
    embedding = tiny_demo.decoder.get_input_embeddings().weight
    scene = sample_scene(8)
    obj = scene.objects[0]
    cell = next(i for i, words in enumerate(cell_words(scene, CONFIG.grid)) if words[2] == obj.shape)
    for j, word in enumerate((obj.size, obj.color, obj.shape)):
        (token,) = processor.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(targets[1, 3 * cell + j], embedding[token])


def test_merged_lora_equals_the_peft_adapters(smollm2_tokenizer) -> None:
    """What training sees (peft layers) and what loading builds (factors merged into plain weights) agree."""
    adapted, plain = tiny_decoder(smollm2_tokenizer), tiny_decoder(smollm2_tokenizer)
    settings = LoraSettings(rank=4, alpha=8.0)
    attach_lora(adapted, settings)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    factors = lora_factors(adapted)
    assert len(factors) == 2 * 7 * 2  # A and B, 7 layer kinds, 2 decoder layers
    ids = torch.randint(0, 1000, (2, 12), generator=generator)
    before = plain(input_ids=ids).logits
    assert merge_lora(plain, factors, settings.scale) == 14
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
        merged = plain(input_ids=ids).logits
    assert (merged - before).abs().max() > 1e-3, "the updates change the decoder"
    torch.testing.assert_close(merged, expected, atol=1e-4, rtol=1e-4)


def test_lora_factors_that_do_not_fit_are_refused(smollm2_tokenizer) -> None:
    decoder = tiny_decoder(smollm2_tokenizer)
    name = "model.layers.0.self_attn.q_proj"
    with pytest.raises(ModelLoadError):
        merge_lora(decoder, {name + ".lora_A": torch.zeros(4, 64)}, 1.0)
    with pytest.raises(ModelLoadError):
        merge_lora(decoder, {name + ".lora_A": torch.zeros(4, 63), name + ".lora_B": torch.zeros(64, 4)}, 1.0)
