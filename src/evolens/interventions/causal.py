"""Causal tests by layer: does a layer range matter for the answer, not only what it reads as?

On teacher-forced targets (the model's own answer, found by an answer word, scored in one forward pass with
the layout of ``evolens.tracing.scoring``), each method changes the forward pass in a window of K
consecutive layers sliding over the depth, through the one intervention site (``evolens.models.capture``):

- ``knockout``: the target position (or, with ``queries="all"``, every position) may not attend to the image
  tokens in decoder layers l..l+K-1 (``AttentionKnockout``; Neo et al. 2025, Zhang et al. 2024);
- ``ablate``: the image tokens' states are replaced by a baseline (their mean over the dataset per layer, or
  zero) in lens layers l..L-1, i.e. from layer l on nothing of the image is left in their positions;
- ``patch``: a corrupted run (the image removed, blank, another image, or Gaussian noise on the image
  embeddings) gets the clean run's state at the target position in lens layers l..l+K-1 (Meng et al. 2022):
  how much of the answer one window restores.

Measures at the target position, from the last layer's readout (the model's logits): the target token's
log-probability, and its logit minus the largest logit among the named alternatives (on the shapes world:
the right colour against the other colours). Effects are intervened minus clean (knockout, ablate) or
patched minus corrupted (patch, with the clean-minus-corrupted gap it could restore), per window, with a
cluster bootstrap over images (``evolens.analysis.bootstrap``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from evolens.analysis.bootstrap import bootstrap_mean
from evolens.data.resolve import Sample
from evolens.errors import UsageError
from evolens.models.capture import AttentionKnockout, LayerCapture, StateEdit
from evolens.models.image_tokens import image_positions
from evolens.models.loaded import LoadedModel
from evolens.tracing.conditions import ConditionedImages
from evolens.tracing.scoring import ScoringBatch, forward, with_responses

Method = Literal["knockout", "ablate", "patch"]
METHODS: tuple[str, ...] = ("knockout", "ablate", "patch")
CORRUPTIONS = ("noise", "no-image", "blank", "shuffled")
MEASURES = ("logprob", "logit_diff")


@dataclass(frozen=True)
class CausalPlan:
    """What to intervene on.

    Attributes:
        method: knockout, ablate or patch.
        window: K, consecutive layers per window.
        starts: window start layers (knockout, patch: decoder layers 1..L-K+1; ablate: lens layers 0..L-1);
            None: all.
        queries: knockout from "target" (the target position) or "all" positions.
        baseline: ablate with the image tokens' "mean" state per layer over the dataset, or "zero".
        corrupt: patch into a run with "noise" on the image embeddings, "no-image", "blank" or "shuffled".
        noise_scale: the noise's standard deviation in units of the image embeddings' (Meng et al.: 3).
        seed: seeds the noise and the shuffled derangement.
    """

    method: str
    window: int = 1
    starts: tuple[int, ...] | None = None
    queries: Literal["target", "all"] = "target"
    baseline: Literal["mean", "zero"] = "mean"
    corrupt: str = "noise"
    noise_scale: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown --method '{self.method}'; use one of {', '.join(METHODS)}")
        if self.window < 1:
            raise UsageError(f"--window must be at least 1 (got {self.window})")
        if self.corrupt not in CORRUPTIONS:
            raise UsageError(f"unknown --corrupt '{self.corrupt}'; use one of {', '.join(CORRUPTIONS)}")
        if self.queries not in ("target", "all"):
            raise UsageError(f"unknown --queries '{self.queries}'; use target or all")
        if self.baseline not in ("mean", "zero"):
            raise UsageError(f"unknown --baseline '{self.baseline}'; use mean or zero")

    def windows(self, n_layers: int) -> list[tuple[int, ...]]:
        """The layers of each window (decoder layers for knockout and patch, lens layers for ablate)."""
        if self.method == "ablate":
            first, last = 0, n_layers - 1
            spans = [tuple(range(start, n_layers)) for start in range(first, last + 1)]
        else:
            spans = [tuple(range(s, s + self.window)) for s in range(1, n_layers - self.window + 2)]
        if self.starts is not None:
            spans = [span for span in spans if span[0] in self.starts]
        if not spans:
            raise UsageError(f"no window of {self.window} layers starts at {list(self.starts or [])}")
        return spans


@dataclass
class Target:
    """A sample's teacher-forced target: its response up to the target token, the token, alternatives."""

    sample: Sample
    response: list[int]
    target: int
    alternatives: list[int] = field(default_factory=list)


@dataclass
class Readout:
    """Measures at the target positions of one batch: (B,) each."""

    logprob: torch.Tensor
    logit_diff: torch.Tensor


def readout(loaded: LoadedModel, targets: Sequence[Target], final: torch.Tensor) -> Readout:
    """The measures from the final layer's states at the target positions, (B, d)."""
    logits = loaded.unembed.logits(final).float()
    logp = torch.log_softmax(logits, dim=-1)
    rows = torch.arange(len(targets))
    wanted = torch.tensor([t.target for t in targets])
    target_logit = logits[rows, wanted]
    rival = torch.stack(
        [
            logits[row, t.alternatives].max() if t.alternatives else torch.tensor(float("nan"))
            for row, t in enumerate(targets)
        ]
    )
    return Readout(logp[rows, wanted], target_logit - rival)


class CausalRunner:
    """Runs one batch of targets under the interventions of a ``CausalPlan``."""

    def __init__(self, loaded: LoadedModel, plan: CausalPlan, samples: Sequence[Sample]) -> None:
        self.loaded = loaded
        self.plan = plan
        self.n_layers = loaded.n_layers
        self.corrupted_images = (
            ConditionedImages(plan.corrupt, samples, plan.seed) if plan.corrupt not in ("noise",) else None
        )
        self.real_images = ConditionedImages("image", samples)
        self.baseline: torch.Tensor | None = None

    def layout(self, targets: Sequence[Target], images: ConditionedImages) -> ScoringBatch:
        """Prompts (as ``images`` shows them) and responses up to each target, laid out for one pass."""
        shown = [images.load(t.sample)[1] for t in targets]
        inputs = self.loaded.build_inputs(
            [t.sample.prompt for t in targets], shown if any(i is not None for i in shown) else None
        )
        pad = self.loaded.tokenizer.pad_token_id
        pad = self.loaded.eos_token_ids[0] if pad is None else pad
        return with_responses(inputs, [t.response for t in targets], pad, self.loaded.adapter.response_inputs)

    def target_positions(self, batch: ScoringBatch) -> torch.Tensor:
        """(B, 1) the position predicting each row's target token (the last of its response)."""
        return (batch.positions.gather(1, (batch.lengths - 1)[:, None])).long()

    def run(
        self,
        targets: Sequence[Target],
        batch: ScoringBatch,
        lens_layers: Sequence[int] | None = None,
        edit: tuple[Sequence[int], Callable[[int, torch.Tensor], torch.Tensor]] | None = None,
        knockout: tuple[Sequence[int], torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[Readout, torch.Tensor]:
        """One forward pass with the given state edit and knockout; the measures and the states (B, n, d) of
        ``lens_layers`` (default: the last) at the target positions."""
        layers = [self.n_layers] if lens_layers is None else list(lens_layers)
        if self.n_layers not in layers:
            raise ValueError("the last layer must be captured to read the measures")
        with contextlib.ExitStack() as active, torch.inference_mode():
            capture = active.enter_context(LayerCapture(self.loaded, layers, self.target_positions(batch)))
            if edit is not None:
                active.enter_context(StateEdit(self.loaded, edit[0], edit[1]))
            if knockout is not None:
                active.enter_context(AttentionKnockout(self.loaded, *knockout))
            forward(self.loaded, batch.inputs)
            states = capture.pop()[:, :, 0]  # (B, n, d)
        return readout(self.loaded, targets, states[:, layers.index(self.n_layers)]), states


def dataset_image_mean(runner: CausalRunner, batches: Sequence[Sequence[Target]]) -> torch.Tensor:
    """(L+1, d) the mean state of the image tokens per lens layer over the dataset (the ablation baseline)."""
    loaded = runner.loaded
    sums = torch.zeros(loaded.n_layers + 1, loaded.unembed.weight.shape[1], dtype=torch.float64)
    count = 0
    for targets in batches:
        batch = runner.layout(targets, runner.real_images)
        mask = image_positions(loaded, batch.inputs["input_ids"])

        def accumulate(layer: int, hidden: torch.Tensor, mask: torch.Tensor = mask) -> torch.Tensor:
            sums[layer] += hidden[mask.to(hidden.device)].double().sum(0).cpu()
            return hidden

        runner.run(targets, batch, edit=(range(loaded.n_layers + 1), accumulate))
        count += int(mask.sum())
    if count == 0:
        raise UsageError("no image tokens in any input: nothing to ablate")
    return (sums / count).float()


def window_effects(runner: CausalRunner, targets: Sequence[Target]) -> dict[str, Any]:
    """One batch: the clean measures and, per window, the intervened ones (and the corrupted ones for
    patch): {"clean": Readout, "corrupted": Readout | None, "windows": [Readout per window]}."""
    plan, loaded, n = runner.plan, runner.loaded, runner.n_layers
    clean_batch = runner.layout(targets, runner.real_images)
    clean, clean_states = runner.run(targets, clean_batch, lens_layers=range(n + 1))
    windows = plan.windows(n)
    results: list[Readout] = []
    corrupted: Readout | None = None
    if plan.method == "knockout":
        ids = clean_batch.inputs["input_ids"]
        keys = image_positions(loaded, ids)
        queries = torch.zeros_like(keys)
        if plan.queries == "all":
            queries[:] = True
        else:
            queries.scatter_(1, runner.target_positions(clean_batch).to(ids.device), True)
        for span in windows:
            results.append(runner.run(targets, clean_batch, knockout=(span, queries, keys))[0])
    elif plan.method == "ablate":
        mask = image_positions(loaded, clean_batch.inputs["input_ids"])
        for span in windows:
            results.append(runner.run(targets, clean_batch, edit=(span, ablation(mask, runner.baseline)))[0])
    else:
        corrupt_batch, noise = corrupted_run(runner, targets)
        corrupted = runner.run(targets, corrupt_batch, edit=noise)[0]
        positions = runner.target_positions(corrupt_batch)
        patch = patching(positions, clean_states, noise)
        for span in windows:
            layers = sorted({*span, *noise_layers(noise)})
            results.append(runner.run(targets, corrupt_batch, edit=(layers, patch(span)))[0])
    return {"clean": clean, "corrupted": corrupted, "windows": results}


def ablation(
    mask: torch.Tensor, baseline: torch.Tensor | None
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """The edit that sets the image positions' states to the baseline of each lens layer (zero if none)."""

    def edit(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        value = 0.0 if baseline is None else baseline[layer].to(hidden.device, hidden.dtype)
        edited = hidden.clone()
        edited[mask.to(hidden.device)] = value
        return edited

    return edit


def corrupted_run(
    runner: CausalRunner, targets: Sequence[Target]
) -> tuple[ScoringBatch, tuple[Sequence[int], Callable[[int, torch.Tensor], torch.Tensor]] | None]:
    """The corrupted batch, and the noise edit of the image embeddings (lens layer 0) when corrupting by
    noise."""
    plan, loaded = runner.plan, runner.loaded
    if runner.corrupted_images is not None:
        return runner.layout(targets, runner.corrupted_images), None
    batch = runner.layout(targets, runner.real_images)
    mask = image_positions(loaded, batch.inputs["input_ids"])
    generator = torch.Generator().manual_seed(plan.seed)

    def noise(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        if layer != 0:
            return hidden
        image = hidden[mask.to(hidden.device)]
        scale = plan.noise_scale * image.float().std()
        shaped = torch.randn(image.shape, generator=generator).to(hidden.device, hidden.dtype)
        edited = hidden.clone()
        edited[mask.to(hidden.device)] = image + scale.to(hidden.dtype) * shaped
        return edited

    return batch, ([0], noise)


def noise_layers(noise: tuple[Sequence[int], Any] | None) -> Sequence[int]:
    return [] if noise is None else noise[0]


def patching(
    positions: torch.Tensor, clean: torch.Tensor, noise: tuple[Sequence[int], Any] | None
) -> Callable[[Sequence[int]], Callable[[int, torch.Tensor], torch.Tensor]]:
    """For a window of lens layers, the edit that puts the clean run's states (B, n, d) at each row's target
    position (B, 1), after the corruption's own noise edit."""

    def for_window(span: Sequence[int]) -> Callable[[int, torch.Tensor], torch.Tensor]:
        def edit(layer: int, hidden: torch.Tensor) -> torch.Tensor:
            if noise is not None and layer in noise[0]:
                hidden = noise[1](layer, hidden)
            if layer not in span:
                return hidden
            edited = hidden.clone()
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            where = positions[:, 0].to(hidden.device)
            edited[rows, where] = clean[:, layer].to(hidden.device, hidden.dtype)
            return edited

        return edit

    return for_window


def summarise_effects(
    per_sample: dict[str, np.ndarray], clusters: np.ndarray, n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """Mean and cluster-bootstrap interval over images of each measure's per-window effects
    (n_samples, n_windows)."""
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    out: dict[str, Any] = {}
    for name, values in per_sample.items():
        finite = np.isfinite(values).all(1)
        stats = bootstrap_mean(values[finite], clusters[finite], n_clusters, n_boot=n_boot, seed=seed)
        out[name] = {**stats.to_dict(), "n_samples": int(finite.sum())}
    return out
