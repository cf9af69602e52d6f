"""Training the demo VLM: shapes-world conversations tokenized with answer-only labels, cached vision
features of several renderings per scene, the projector warm start and the decoder's LoRA adapters.

Train and inference formatting are identical: conversations go through ``DemoProcessor.apply_chat_template``
(SmolLM2's template, default system prompt, image placeholders), the same path ``build_inputs`` uses.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from evolens.data.shapes.render import REFERENCE_STYLE, RenderStyle, random_style, render_scene
from evolens.data.shapes.text import Turn, conversation
from evolens.data.shapes.world import Scene, sample_scene
from evolens.models.demo.lora import A_SUFFIX, B_SUFFIX, LoraSettings
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
        image_features: (B, n_cells, feature_dim) frozen vision features, one image per row.
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
    ``Batch``; ``features`` (B, n_cells, feature_dim) in row order."""
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


def rendering_style(seed: int, copy: int) -> RenderStyle:
    """How copy ``copy`` of scene ``seed`` is drawn: copy 0 by the reference renderer, the others in a
    training style drawn from ``random_style`` (deterministic in seed and copy)."""
    return REFERENCE_STYLE if copy == 0 else random_style(random.Random(f"style-{seed}-{copy}"))


def features_cache_path(cache: Path, encoder: VisionEncoder, seeds: range, copies: int) -> Path:
    """A cache file name that changes with the vision config, the scene seeds and the renderings."""
    key = f"{encoder.config.taps}|{encoder.config.grid}|{encoder.config.pos_freqs}|{seeds.start}|{seeds.stop}"
    key += f"|copies={copies}|render-v2"
    return cache / f"demo-features-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


@torch.no_grad()
def scene_features(
    encoder: VisionEncoder,
    seeds: range,
    copies: int = 1,
    cache: Path | None = None,
    chunk: int = 32,
    log=print,
) -> torch.Tensor:
    """Vision features of ``copies`` renderings (``rendering_style``) of the scenes ``seeds``:
    (len(seeds), copies, n_cells, feature_dim) float16, cached on disk."""
    path = features_cache_path(cache, encoder, seeds, copies) if cache else None
    if path is not None and path.exists():
        return torch.load(path)
    jobs = [(seed, copy) for seed in seeds for copy in range(copies)]
    parts = []
    for start in range(0, len(jobs), chunk):
        images = [
            render_scene(sample_scene(s), style=rendering_style(s, c)) for s, c in jobs[start : start + chunk]
        ]
        parts.append(encoder(preprocess(images)).half())
        if start % (chunk * 20) == 0:
            log(f"features: {start + len(images)}/{len(jobs)} images")
    features = torch.cat(parts).reshape(len(seeds), copies, *parts[0].shape[1:])
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
    copies: Sequence[int] | None = None,
    talk: Callable[[Scene, random.Random, int], list[Turn]] = conversation,
) -> Batch:
    """A batch of fresh conversations about the scenes at ``indices`` (into ``seeds`` and ``features``
    (n_scenes, n_copies, n_cells, feature_dim)), row i seeing rendering ``copies[i]`` (default 0).
    ``talk`` writes a scene's conversation (``demo.prior.prior_conversation`` plants the prior)."""
    rows = [tokenize_conversation(processor, talk(sample_scene(seeds[i]), rng, n_turns)) for i in indices]
    chosen = list(copies) if copies is not None else [0] * len(indices)
    pad = processor.tokenizer.pad_token_id
    return collate(rows, features[list(indices), chosen].float(), pad, processor.image_token_id)


def cell_words(scene: Scene, grid: int) -> list[tuple[str, str, str]]:
    """What each cell shows, in three words, row-major: (size, colour, shape) where an object's centre
    lies, (texture, colour, 'background') elsewhere."""
    background = scene.background
    words = [(background.texture, background.color, "background")] * (grid * grid)
    for obj in scene.objects:
        row = min(int(obj.center[1] * grid), grid - 1)
        column = min(int(obj.center[0] * grid), grid - 1)
        words[row * grid + column] = (obj.size, obj.color, obj.shape)
    return words


@torch.no_grad()
def alignment_targets(
    model: DemoVLM, tokenizer, seeds: range, grid: int, tokens_per_cell: int
) -> torch.Tensor:
    """Warm-start targets for the image tokens: (len(seeds), grid*grid*tokens_per_cell, d_model).

    With three tokens per cell, token j of a cell is the input embedding of word j of its ``cell_words``
    (a word of several tokens: their mean, scaled to their mean norm); with one token per cell, the mean
    embedding of the three words, scaled to the vocabulary's mean embedding norm.
    """
    if tokens_per_cell not in (1, 3):
        raise ValueError(f"warm-start targets exist for 1 or 3 tokens per cell, not {tokens_per_cell}")
    embedding = model.decoder.get_input_embeddings().weight.float()
    vocabulary_norm = embedding.norm(dim=-1).mean()
    cache: dict[str, torch.Tensor] = {}

    def vector(words: str) -> torch.Tensor:
        if words not in cache:
            rows = embedding[tokenizer(" " + words, add_special_tokens=False)["input_ids"]]
            mean = rows.mean(0)
            scale = vocabulary_norm if tokens_per_cell == 1 else rows.norm(dim=-1).mean()
            cache[words] = mean / mean.norm() * scale
        return cache[words]

    def cell(words: tuple[str, str, str]) -> list[torch.Tensor]:
        return [vector(" ".join(words))] if tokens_per_cell == 1 else [vector(w) for w in words]

    return torch.stack(
        [torch.stack([t for words in cell_words(sample_scene(s), grid) for t in cell(words)]) for s in seeds]
    )


def align_projector(
    model: DemoVLM, features: torch.Tensor, targets: torch.Tensor, steps: int, lr: float, seed: int = 0
) -> float:
    """Warm start: regress projector outputs onto ``targets`` (n_scenes, N, d_model) (MSE), so image tokens
    begin as word embeddings the decoder can read. ``features`` (n_scenes, n_copies, n_cells, feature_dim):
    every rendering of a scene has the scene's targets. No decoder pass; seconds on a CPU. Returns the final
    loss."""
    n_scenes, n_copies, n_cells, _ = features.shape
    inputs = features.reshape(n_scenes * n_copies * n_cells, 1, -1).float()
    per_cell = targets.reshape(n_scenes, 1, n_cells, -1, targets.shape[-1]).expand(-1, n_copies, -1, -1, -1)
    wanted = per_cell.reshape(n_scenes * n_copies * n_cells, -1, targets.shape[-1])
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


def attach_lora(decoder: nn.Module, settings: LoraSettings) -> None:
    """Give the decoder's ``settings.targets`` layers trainable LoRA adapters (peft; B starts at zero, so
    the decoder is unchanged until trained). Everything else stays frozen."""
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=int(settings.alpha),
        target_modules=list(settings.targets),
        lora_dropout=0.0,
    )
    inject_adapter_in_model(config, decoder)


def lora_factors(decoder: nn.Module) -> dict[str, torch.Tensor]:
    """The trained factors of every LoRA layer: ``<module>.lora_A`` (rank, in), ``<module>.lora_B``
    (out, rank), the format ``evolens.models.demo.lora.merge_lora`` reads."""
    factors: dict[str, torch.Tensor] = {}
    for name, module in decoder.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            down: nn.Linear = cast(nn.Linear, module.lora_A["default"])
            up: nn.Linear = cast(nn.Linear, module.lora_B["default"])
            factors[name + A_SUFFIX] = down.weight.detach().clone()
            factors[name + B_SUFFIX] = up.weight.detach().clone()
    return factors
