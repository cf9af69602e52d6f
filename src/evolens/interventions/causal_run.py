"""The causal experiment over a dataset: targets from the model's own answers, every window of a
``CausalPlan`` on every batch, effects with intervals, ``causal.json``.

The target of a sample is the first token of its greedy answer that spells one of ``answer_words`` (the
colour question: a colour name); its alternatives are the other answer words spelled the same way (same
leading space and case). Without answer words the target is the answer's first token and there is no
alternative (the logit difference is then not measured). Samples without a target are listed, not dropped
silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evolens.data.resolve import Sample
from evolens.interventions.causal import (
    MEASURES,
    CausalPlan,
    CausalRunner,
    Target,
    dataset_image_mean,
    summarise_effects,
    window_effects,
)
from evolens.io.atomic import write_json
from evolens.models.loaded import LoadedModel
from evolens.tracing.conditions import ConditionedImages
from evolens.tracing.scoring import samples_from_trace


def word_of(token: str) -> str:
    """A token's word: lower case, without spaces and punctuation."""
    return re.sub(r"[^a-z0-9]+", "", token.lower())


def find_targets(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    answer_words: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[Target], list[str]]:
    """Each sample's target (see the module doc) from its greedy answer, and the ids without one."""
    images = ConditionedImages("image", samples)

    def answers() -> Iterator[tuple[Sample, list[int]]]:
        for start in range(0, len(samples), batch_size):
            chosen = samples[start : start + batch_size]
            shown = [images.load(sample)[1] for sample in chosen]
            inputs = loaded.build_inputs([s.prompt for s in chosen], shown if any(shown) else None)
            yield from zip(
                chosen, loaded.generate(inputs, max_new_tokens=max_new_tokens).tolist(), strict=True
            )

    return targets_in(loaded, answers(), answer_words)


def targets_in(
    loaded: LoadedModel, answers: Iterable[tuple[Sample, list[int]]], answer_words: Sequence[str]
) -> tuple[list[Target], list[str]]:
    """The targets in (sample, generated token ids) pairs, and the ids of the samples without one."""
    words = [word.lower() for word in answer_words]
    targets, missing = [], []
    for sample, tokens in answers:
        target = target_of(loaded, sample, tokens, words)
        if target is None:
            missing.append(sample.sample_id)
        else:
            targets.append(target)
    return targets, missing


def target_of(loaded: LoadedModel, sample: Sample, tokens: list[int], words: Sequence[str]) -> Target | None:
    """The target in one greedy answer (``tokens``), or None when no answer word is there."""
    eos = set(loaded.eos_token_ids)
    answer = tokens[: next((i for i, t in enumerate(tokens) if t in eos), len(tokens))]
    if not answer:
        return None
    if not words:
        return Target(sample, answer[:1], answer[0])
    strings = loaded.token_strings(answer)
    step = next((i for i, text in enumerate(strings) if word_of(text) in words), None)
    if step is None:
        return None
    surface = strings[step]
    spelled = word_of(surface)
    alternatives = []
    for other in words:
        if other == spelled:
            continue
        variant = re.sub(spelled, other, surface, flags=re.IGNORECASE)
        ids = loaded.tokenizer(variant, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            alternatives.append(int(ids[0]))
    return Target(sample, answer[: step + 1], answer[step], alternatives)


def run_causal(
    loaded: LoadedModel,
    targets: Sequence[Target],
    plan: CausalPlan,
    batch_size: int = 8,
    n_boot: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every window of ``plan`` on every target; the effects with cluster-bootstrap intervals over images."""
    runner = CausalRunner(loaded, plan, [t.sample for t in targets])
    batches = [list(targets[i : i + batch_size]) for i in range(0, len(targets), batch_size)]
    if plan.method == "ablate" and plan.baseline == "mean":
        runner.baseline = dataset_image_mean(runner, batches)
    windows = plan.windows(loaded.n_layers)
    clean: dict[str, list[float]] = {name: [] for name in MEASURES}
    corrupted: dict[str, list[float]] = {name: [] for name in MEASURES}
    effects: dict[str, list[list[float]]] = {name: [] for name in MEASURES}
    for index, batch in enumerate(batches):
        if progress is not None:
            progress(f"{plan.method}: batch {index + 1}/{len(batches)}, {len(windows)} windows")
        out = window_effects(runner, batch)
        reference = out["corrupted"] if out["corrupted"] is not None else out["clean"]
        for name in MEASURES:
            base = getattr(reference, name)
            clean[name].extend(getattr(out["clean"], name).tolist())
            if out["corrupted"] is not None:
                corrupted[name].extend(base.tolist())
            rows = torch.stack([getattr(result, name) - base for result in out["windows"]], dim=1)
            effects[name].extend(rows.tolist())
    clusters = image_clusters([t.sample for t in targets])
    per_sample = {name: np.asarray(values, dtype=np.float64) for name, values in effects.items()}
    result: dict[str, Any] = {
        "method": plan.method,
        "windows": [list(span) for span in windows],
        "effects": summarise_effects(per_sample, clusters, n_boot),
        "clean": _means(clean, clusters, n_boot),
        "n_samples": len(targets),
        "n_images": int(clusters.max()) + 1 if len(clusters) else 0,
    }
    if plan.method == "patch":
        result["corrupted"] = _means(corrupted, clusters, n_boot)
        gap = {name: np.subtract(clean[name], corrupted[name])[:, None] for name in MEASURES}
        result["gap"] = summarise_effects(gap, clusters, n_boot)
    return result


def _means(values: dict[str, list[float]], clusters: np.ndarray, n_boot: int) -> dict[str, Any]:
    return summarise_effects(
        {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in values.items()}, clusters, n_boot
    )


def image_clusters(samples: Sequence[Sample]) -> np.ndarray:
    """(n,) the index of each sample's image (a text-only sample is its own cluster): bootstrap units."""
    keys = [str(s.image) if s.image is not None else f"text:{s.sample_id}" for s in samples]
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return np.asarray([index[key] for key in keys], dtype=np.int64)


SCHEMA = "evolens.causal/1"


def write_causal(
    out: Path,
    results: list[dict[str, Any]],
    settings: dict[str, Any],
    key_layers: dict[str, int | None] | None = None,
    figures: bool = True,
) -> Path:
    """``out/causal.json`` (the settings, one result per method, and ``key_layers``: the lens-based layers
    the effects are compared with, e.g. {"critical": 2, "mutation": None}) and ``out/causal.png``/``.svg``."""
    record = {
        "schema": SCHEMA,
        "settings": settings,
        "key_layers": key_layers or {},
        "methods": {r["method"]: r for r in results},
    }
    path = write_json(out / "causal.json", record)
    if figures and results:
        from evolens.plots.causal import plot_causal
        from evolens.plots.style import save_figure

        save_figure(plot_causal(record, key_layers), out, "causal")
    return path


def targets_from_trace(
    loaded: LoadedModel, trace_dir: Path, answer_words: Sequence[str], limit: int | None = None
) -> tuple[list[Target], list[str]]:
    """The targets (module doc) in a trace's own generated tokens, for its first ``limit`` samples, and the
    ids of the samples without one."""
    samples, _ = samples_from_trace(trace_dir)
    answers = (
        (sample, list(sample.response) if isinstance(sample.response, tuple) else [])
        for sample in samples[:limit]
    )
    return targets_in(loaded, answers, answer_words)
