"""Measuring the demo VLM on held-out shapes-world scenes (seeds from ``EVAL_SEED_BASE`` up).

Four measures, each over its own scenes:

- colour / shape accuracy: single-object scenes, "What is the color of the shape?" / "What shape is in the
  image?"; the answer is right when ``parse_color`` / ``parse_shape`` gives the true value;
- description object precision: 2-3-object scenes, "Describe this image."; every object mention that
  ``parse_description`` finds counts as correct when a ground-truth object has its shape and colour
  (a mention without a colour counts as wrong); also recall (ground-truth objects mentioned) and, over the
  correct mentions, how often size and position are right;
- yes/no existence accuracy: one question per scene over all scenes, "yes" and "no" answers alternating;
  negatives are hard half the time (see ``evolens.data.shapes.text.absent_object``);
- robustness: colour / shape accuracy again, on the same single-object scenes drawn in ``UNSEEN_STYLE`` at
  ``UNSEEN_SIZE`` pixels, a way of drawing that training never used (supersampling 3 with a box filter,
  training uses 1, 2 or 4 with Lanczos, bilinear or bicubic; objects, rotation, tint and texture spacing
  beyond the training ranges; a 160-pixel image, training draws 224).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evolens.data.shapes.parse import parse_color, parse_description, parse_shape, parse_yes_no
from evolens.data.shapes.render import DEFAULT_SIZE, RenderStyle, render_scene
from evolens.data.shapes.text import (
    COLOR_PROMPTS,
    DESCRIBE_PROMPTS,
    EXIST_PROMPTS,
    SHAPE_PROMPTS,
    absent_object,
)
from evolens.data.shapes.world import Scene, sample_scene
from evolens.models.loaded import LoadedModel

EVAL_SEED_BASE = 10_000_000
SINGLE_OFFSET = 0
MULTI_OFFSET = 100_000
UNSEEN_STYLE = RenderStyle(
    supersample=3,
    resample="box",
    scale=1.12,
    rotation=14.0,
    shift=(0.01, -0.01),
    tint=(14, -8, 6),
    texture_step=1.4,
    texture_contrast=44,
)
UNSEEN_SIZE = 160


@dataclass
class Quality:
    """Measured numbers (fractions in [0, 1]) and the raw records behind them."""

    numbers: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)


def single_object_scenes(n: int) -> list[Scene]:
    """The held-out single-object scenes."""
    return [sample_scene(EVAL_SEED_BASE + SINGLE_OFFSET + i, n_objects=1) for i in range(n)]


def multi_object_scenes(n: int) -> list[Scene]:
    """The held-out scenes with two or three objects (alternating)."""
    return [sample_scene(EVAL_SEED_BASE + MULTI_OFFSET + i, n_objects=2 + i % 2) for i in range(n)]


def answer_all(
    loaded: LoadedModel,
    scenes: Sequence[Scene],
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    style: RenderStyle | None = None,
    size: int = DEFAULT_SIZE,
) -> list[str]:
    """Greedy answers to ``prompts[i]`` about ``scenes[i]`` (drawn in ``style``, default the reference
    renderer, at ``size`` pixels), in batches."""
    answers: list[str] = []
    draw = style or RenderStyle()
    for start in range(0, len(scenes), batch_size):
        chunk = range(start, min(start + batch_size, len(scenes)))
        images = [render_scene(scenes[i], size=size, style=draw) for i in chunk]
        inputs = loaded.build_inputs([prompts[i] for i in chunk], images)
        new_ids = loaded.generate(inputs, max_new_tokens=max_new_tokens)
        answers += [loaded.decode(row) for row in new_ids]
    return answers


def measure(
    loaded: LoadedModel,
    n_single: int = 150,
    n_multi: int = 150,
    batch_size: int = 16,
    log: Callable[[str], None] = lambda _m: None,
) -> Quality:
    """All measures on ``n_single`` + ``n_multi`` held-out scenes."""
    quality = Quality()
    singles, multis = single_object_scenes(n_single), multi_object_scenes(n_multi)

    color_prompts = [COLOR_PROMPTS[i % len(COLOR_PROMPTS)] for i in range(n_single)]
    colors = answer_all(loaded, singles, color_prompts, 8, batch_size)
    log("colour questions answered")
    shape_prompts = [SHAPE_PROMPTS[i % len(SHAPE_PROMPTS)] for i in range(n_single)]
    shapes = answer_all(loaded, singles, shape_prompts, 8, batch_size)
    log("shape questions answered")
    right_color = right_shape = 0
    for scene, c_prompt, c_answer, s_prompt, s_answer in zip(
        singles, color_prompts, colors, shape_prompts, shapes, strict=True
    ):
        truth = scene.objects[0]
        right_color += parse_color(c_answer) == truth.color
        right_shape += parse_shape(s_answer) == truth.shape
        quality.records += [
            _record("color", scene, c_prompt, c_answer, parse_color(c_answer) == truth.color),
            _record("shape", scene, s_prompt, s_answer, parse_shape(s_answer) == truth.shape),
        ]
    quality.numbers["color_accuracy"] = right_color / n_single
    quality.numbers["shape_accuracy"] = right_shape / n_single
    quality.counts["single_object_scenes"] = n_single
    _score_unseen_style(quality, loaded, singles, color_prompts, shape_prompts, batch_size)
    log("colour and shape questions on unseen drawings answered")

    describe_prompts = [DESCRIBE_PROMPTS[i % len(DESCRIBE_PROMPTS)] for i in range(n_multi)]
    descriptions = answer_all(loaded, multis, describe_prompts, 72, batch_size)
    log("descriptions generated")
    _score_descriptions(quality, multis, describe_prompts, descriptions)

    _score_yes_no(quality, loaded, singles + multis, batch_size)
    log("yes/no questions answered")
    return quality


def _score_unseen_style(
    quality: Quality,
    loaded: LoadedModel,
    scenes: Sequence[Scene],
    color_prompts: Sequence[str],
    shape_prompts: Sequence[str],
    batch_size: int,
) -> None:
    colors = answer_all(loaded, scenes, color_prompts, 8, batch_size, UNSEEN_STYLE, UNSEEN_SIZE)
    shapes = answer_all(loaded, scenes, shape_prompts, 8, batch_size, UNSEEN_STYLE, UNSEEN_SIZE)
    right_color = right_shape = 0
    for scene, c_prompt, c_answer, s_prompt, s_answer in zip(
        scenes, color_prompts, colors, shape_prompts, shapes, strict=True
    ):
        truth = scene.objects[0]
        right_color += parse_color(c_answer) == truth.color
        right_shape += parse_shape(s_answer) == truth.shape
        quality.records += [
            _record("color_unseen_style", scene, c_prompt, c_answer, parse_color(c_answer) == truth.color),
            _record("shape_unseen_style", scene, s_prompt, s_answer, parse_shape(s_answer) == truth.shape),
        ]
    quality.numbers["color_accuracy_unseen_style"] = right_color / len(scenes)
    quality.numbers["shape_accuracy_unseen_style"] = right_shape / len(scenes)


def _score_descriptions(
    quality: Quality, scenes: Sequence[Scene], prompts: Sequence[str], descriptions: Sequence[str]
) -> None:
    mentions = correct = found = truths = size_right = position_right = 0
    for scene, prompt, text in zip(scenes, prompts, descriptions, strict=True):
        parsed = parse_description(text)
        matched = [next((o for o in scene.objects if p.matches(o)), None) for p in parsed]
        mentions += len(parsed)
        correct += sum(m is not None for m in matched)
        truths += len(scene.objects)
        found += sum(any(p.matches(o) for p in parsed) for o in scene.objects)
        for p, o in zip(parsed, matched, strict=True):
            if o is not None:
                size_right += p.size == o.size
                position_right += p.position == o.position
        precision = sum(m is not None for m in matched) / len(parsed) if parsed else 0.0
        quality.records.append(_record("describe", scene, prompt, text, precision))
    quality.numbers["description_object_precision"] = correct / mentions if mentions else 0.0
    quality.numbers["description_object_recall"] = found / truths
    quality.numbers["description_size_accuracy"] = size_right / correct if correct else 0.0
    quality.numbers["description_position_accuracy"] = position_right / correct if correct else 0.0
    quality.counts["multi_object_scenes"] = len(scenes)
    quality.counts["described_objects"] = mentions


def _score_yes_no(quality: Quality, loaded: LoadedModel, scenes: Sequence[Scene], batch_size: int) -> None:
    rng = random.Random(EVAL_SEED_BASE)
    prompts, truths = [], []
    for index, scene in enumerate(scenes):
        present = index % 2 == 0
        obj = rng.choice(scene.objects)
        color, shape = (obj.color, obj.shape) if present else absent_object(scene, rng)
        prompts.append(EXIST_PROMPTS[index % len(EXIST_PROMPTS)].format(color=color, shape=shape))
        truths.append(present)
    answers = answer_all(loaded, scenes, prompts, 4, batch_size)
    right = {True: 0, False: 0}
    for scene, prompt, answer, truth in zip(scenes, prompts, answers, truths, strict=True):
        ok = parse_yes_no(answer) == truth
        right[truth] += ok
        quality.records.append(_record("exist", scene, prompt, answer, ok))
    n_yes = sum(truths)
    quality.numbers["yes_no_accuracy"] = (right[True] + right[False]) / len(scenes)
    quality.numbers["yes_no_accuracy_on_present"] = right[True] / n_yes
    quality.numbers["yes_no_accuracy_on_absent"] = right[False] / (len(scenes) - n_yes)
    quality.counts["yes_no_questions"] = len(scenes)


def _record(task: str, scene: Scene, prompt: str, answer: str, score: float | bool) -> dict:
    return {"task": task, "seed": scene.seed, "prompt": prompt, "answer": answer, "score": float(score)}
