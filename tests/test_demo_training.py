"""Training data and loss of the demo projector (with a tiny random decoder, so it is fast)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from evolens.data.shapes.text import conversation
from evolens.data.shapes.world import sample_scene
from evolens.models.demo.model import DemoVLM, Projector
from evolens.models.demo.processor import DemoProcessor
from evolens.models.demo.training import IGNORE, answer_loss, chat_messages, make_batch, tokenize_conversation
from evolens.models.demo.vision import VisionConfig, VisionEncoder, feature_dim

CONFIG = VisionConfig()


@pytest.fixture(scope="module")
def processor(smollm2_tokenizer) -> DemoProcessor:
    return DemoProcessor(smollm2_tokenizer, CONFIG.n_tokens)


@pytest.fixture(scope="module")
def tiny_demo(smollm2_tokenizer, processor: DemoProcessor) -> DemoVLM:
    torch.manual_seed(0)
    decoder = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(smollm2_tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).eval()
    projector = Projector(feature_dim(CONFIG), 64, 32)
    return DemoVLM(VisionEncoder(CONFIG), projector, decoder, processor.image_token_id)


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
    features = torch.randn(3, CONFIG.n_tokens, feature_dim(CONFIG))
    batch = make_batch(processor, features, range(40, 43), [0, 1, 2], random.Random(2), n_turns=3)
    with torch.no_grad():
        loss = answer_loss(tiny_demo, batch).item()
        total, count = 0.0, 0
        for row in range(3):
            keep = batch.attention_mask[row].bool()
            ids = torch.cat([batch.prefix_ids, batch.input_ids[row][keep]])[None]
            labels = torch.cat([torch.full_like(batch.prefix_ids, IGNORE), batch.labels[row][keep]])
            logits = tiny_demo(
                inputs_embeds=tiny_demo.embed(ids, image_features=features[row : row + 1])
            ).logits
            targets = labels[1:]
            chosen = targets != IGNORE
            total += F.cross_entropy(logits[0, :-1][chosen], targets[chosen], reduction="sum").item()
            count += int(chosen.sum())
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_only_the_projector_gets_gradients(processor: DemoProcessor, tiny_demo: DemoVLM) -> None:
    tiny_demo.decoder.requires_grad_(False)
    features = torch.randn(2, CONFIG.n_tokens, feature_dim(CONFIG))
    batch = make_batch(processor, features, range(50, 52), [0, 1], random.Random(3), n_turns=2)
    tiny_demo.projector.zero_grad()
    answer_loss(tiny_demo, batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_demo.projector.parameters())
    assert all(p.grad is None for p in tiny_demo.decoder.parameters())
