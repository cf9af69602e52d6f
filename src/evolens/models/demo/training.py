"""Training data for the demo projector: shapes-world conversations tokenized with answer-only labels.

Train and inference formatting are identical: conversations go through ``DemoProcessor.apply_chat_template``
(SmolLM2's template, default system prompt, image placeholders), the same path ``build_inputs`` uses.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from evolens.data.shapes.render import render_scene
from evolens.data.shapes.text import Turn
from evolens.data.shapes.world import Scene, sample_scene
from evolens.models.demo.model import DemoVLM
from evolens.models.demo.processor import DemoProcessor
from evolens.models.demo.vision import VisionEncoder, preprocess

IGNORE = -100


@dataclass
class Batch:
    """A training batch: conversations after their shared prefix, right-padded.

    Attributes:
        prefix_ids: (P,) the tokens every conversation starts with (system prompt, start of the user turn);
            run once per step, their keys and values are shared by all rows.
        input_ids / attention_mask / labels: (B, T) the rest of each conversation; labels are -100 except
            on answer tokens.
        image_features: (B, N, feature_dim) frozen vision features, one image per row.
    """

    prefix_ids: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    image_features: torch.Tensor


def chat_messages(turns: Sequence[Turn], with_answers: bool = True) -> list[dict]:
    """Turns -> chat messages; the image goes at the start of the first user turn."""
    messages: list[dict] = []
    for index, turn in enumerate(turns):
        content: list[dict] = [{"type": "text", "text": turn.question}]
        if index == 0:
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        if with_answers:
            messages.append({"role": "assistant", "content": turn.answer})
    return messages


def tokenize_conversation(processor: DemoProcessor, turns: Sequence[Turn]) -> tuple[list[int], list[int]]:
    """Token ids of the formatted conversation and labels marking each answer and its end-of-turn token."""
    text = processor.apply_chat_template(chat_messages(turns), add_generation_prompt=False)
    spans, cursor = [], 0
    for turn in turns:
        start = text.index(turn.answer + "<|im_end|>", cursor)
        cursor = start + len(turn.answer) + len("<|im_end|>")
        spans.append((start, cursor))
    encoded = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    labels = [
        token if any(a <= begin < b for a, b in spans) else IGNORE
        for token, (begin, _end) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return ids, labels


def collate(
    rows: Sequence[tuple[list[int], list[int]]], features: torch.Tensor, pad_id: int, image_token_id: int
) -> Batch:
    """Split off the shared prefix (everything before the first image token) and right-pad the rest into a
    ``Batch``; ``features`` (B, N, feature_dim) in row order."""
    prefix = rows[0][0][: rows[0][0].index(image_token_id)]
    if any(ids[: len(prefix)] != prefix for ids, _ in rows):
        raise ValueError("conversations do not share their prefix; check the chat template")
    rest = [(ids[len(prefix) :], labels[len(prefix) :]) for ids, labels in rows]
    length = max(len(ids) for ids, _ in rest)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(rest):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        mask[row, : len(ids)] = 1
    return Batch(torch.tensor(prefix), input_ids, mask, labels, features)


def answer_loss(model: DemoVLM, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy on answer tokens.

    The shared prefix runs once without gradient and its cache is repeated over the batch; the unembedding
    runs on answer positions only. Equal to the loss on the full, unsplit conversations.
    """
    rows, length = batch.input_ids.shape
    with torch.no_grad():
        cache = model.decoder.model(input_ids=batch.prefix_ids[None], use_cache=True).past_key_values
    cache.batch_repeat_interleave(rows)
    n_prefix = batch.prefix_ids.shape[0]
    embeds = model.embed(batch.input_ids, image_features=batch.image_features)
    mask = torch.cat([torch.ones(rows, n_prefix, dtype=torch.long), batch.attention_mask], dim=1)
    positions = torch.arange(n_prefix, n_prefix + length).expand(rows, -1)
    hidden = model.decoder.model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    targets = batch.labels[:, 1:]
    selected = targets != IGNORE
    logits = model.decoder.lm_head(hidden[:, :-1][selected]).float()
    return F.cross_entropy(logits, targets[selected])


def features_cache_path(cache: Path, encoder: VisionEncoder, seeds: range) -> Path:
    """A cache file name that changes with the vision config and the scene seeds."""
    key = f"{encoder.config}|{seeds.start}|{seeds.stop}|render-v1"
    return cache / f"demo-features-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


@torch.no_grad()
def scene_features(
    encoder: VisionEncoder, seeds: range, cache: Path | None = None, chunk: int = 32, log=print
) -> torch.Tensor:
    """Vision features of the scenes ``seeds``: (len(seeds), N, feature_dim) float16, cached on disk."""
    path = features_cache_path(cache, encoder, seeds) if cache else None
    if path is not None and path.exists():
        return torch.load(path)
    parts = []
    for start in range(seeds.start, seeds.stop, chunk):
        batch_seeds = range(start, min(start + chunk, seeds.stop))
        pixels = preprocess([render_scene(sample_scene(s)) for s in batch_seeds])
        parts.append(encoder(pixels).half())
        if (start - seeds.start) % (chunk * 10) == 0:
            log(f"features: {start - seeds.start + len(batch_seeds)}/{len(seeds)} scenes")
    features = torch.cat(parts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(features, path)
    return features


def make_batch(
    processor: DemoProcessor,
    features: torch.Tensor,
    seeds: range,
    indices: Sequence[int],
    rng: random.Random,
    n_turns: int,
) -> Batch:
    """A batch of fresh conversations about the scenes at ``indices`` (into ``seeds``/``features``)."""
    from evolens.data.shapes.text import conversation

    rows = [
        tokenize_conversation(processor, conversation(sample_scene(seeds[i]), rng, n_turns)) for i in indices
    ]
    pad = processor.tokenizer.pad_token_id
    return collate(rows, features[list(indices)].float(), pad, processor.image_token_id)


def cell_words(scene: Scene, grid: int) -> list[str]:
    """What each image-token cell shows, in words, row-major: '{size} {color} {shape}' where an object's
    centre lies, '{color} background' elsewhere."""
    words = [f"{scene.background.color} background"] * (grid * grid)
    for obj in scene.objects:
        row = min(int(obj.center[1] * grid), grid - 1)
        column = min(int(obj.center[0] * grid), grid - 1)
        words[row * grid + column] = f"{obj.size} {obj.color} {obj.shape}"
    return words


@torch.no_grad()
def alignment_targets(model: DemoVLM, tokenizer, seeds: range, grid: int) -> torch.Tensor:
    """Per image token, the mean input embedding of its ``cell_words``, scaled to the vocabulary's mean
    embedding norm: (len(seeds), grid*grid, d_model)."""
    embedding = model.decoder.get_input_embeddings().weight.float()
    scale = embedding.norm(dim=-1).mean()
    cache: dict[str, torch.Tensor] = {}

    def vector(words: str) -> torch.Tensor:
        if words not in cache:
            ids = tokenizer(" " + words, add_special_tokens=False)["input_ids"]
            mean = embedding[ids].mean(0)
            cache[words] = mean / mean.norm() * scale
        return cache[words]

    return torch.stack([torch.stack([vector(w) for w in cell_words(sample_scene(s), grid)]) for s in seeds])


def align_projector(
    model: DemoVLM, features: torch.Tensor, targets: torch.Tensor, steps: int, lr: float, seed: int = 0
) -> float:
    """Warm start: regress projector outputs onto ``targets`` (MSE), so image tokens begin as word-like
    embeddings the frozen decoder can read. No decoder pass; seconds on a CPU. Returns the final loss."""
    inputs = features.reshape(-1, features.shape[-1]).float()
    wanted = targets.reshape(-1, targets.shape[-1])
    optimizer = torch.optim.AdamW(model.projector.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        rows = torch.randint(0, inputs.shape[0], (512,), generator=generator)
        loss = F.mse_loss(model.projector(inputs[rows]), wanted[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()
