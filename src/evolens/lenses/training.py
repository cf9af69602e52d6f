"""Training a tuned lens on a model's own generations (``evolens train-lens``), the ``tuned-lens`` recipe.

1. The model generates on the samples; every generated step's states are kept (``lens_data``).
2. Whole images go to a held-out split (``held_out`` of them, chosen by a hash of the image path).
3. Translators start at zero (the lens starts as the logit lens) and minimise, on batches of generated steps,
   sum over lens layers l < L of mean KL(p_L || p_l), p_L being the model's own next-token distribution:
   SGD with Nesterov momentum (lr 1.0 x (1 - momentum), weight decay 1e-3, linear decay to 0, gradient norm
   clipped to 1) or Adam (lr 1e-3, linear warmup over a fifth of the steps), as ``tuned-lens`` 0.2.0 trains.
   The unembedding product of the loss runs in bfloat16 (``tuned-lens`` trains under bf16 autocast); the
   targets and every reported KL are fp32.
4. Every ``checkpoint_every`` steps the lens and optimizer state go to ``checkpoint.pt``; a rerun of the same
   command resumes from it (and skips the collection already done).
5. The held-out KL per layer of the tuned lens and of the logit lens goes to ``manifest.json``, next to the
   lens (``config.json`` + ``params.pt``, the ``tuned-lens`` format).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from evolens.data.resolve import Sample
from evolens.errors import UsageError
from evolens.io import atomic
from evolens.lenses.logit import Lens, LogitLens
from evolens.lenses.states import LensData, collect_states, load_states
from evolens.lenses.tuned import PARAMS_FILE, TunedLens
from evolens.models.loaded import LoadedModel
from evolens.models.readout import Unembed

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"
SETTINGS = "training.json"
Report = Callable[[str], None]
PARAM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LensTrainingSettings:
    """How a tuned lens is trained; all of it is recorded, and a rerun into the same folder must match.

    Attributes:
        steps: optimizer steps.
        batch_size: generated steps (rows) per optimizer step.
        optimizer: "sgd" (Nesterov momentum, the ``tuned-lens`` default) or "adam".
        lr: learning rate; None = ``tuned-lens``'s default (1.0 x (1 - momentum) for SGD, 1e-3 for Adam).
        momentum: SGD momentum or Adam's beta1.
        weight_decay: L2 penalty pulling the translators to zero (the lens to the logit lens).
        held_out: fraction of the images whose generations are held out for evaluation.
        seed: seeds the batches.
        max_new_tokens: generation budget per sample.
        generation_batch_size: samples per generate() call.
        checkpoint_every: steps between checkpoints.
        eval_every: steps between held-out checks (on the first ``eval_rows`` held-out rows).
        eval_rows: held-out rows of the periodic check (the final evaluation uses all of them).
        matmul_dtype: dtype of the loss' unembedding product ("bfloat16" or "float32").
        params_dtype: dtype of the saved translators ("float32" or "bfloat16").
    """

    steps: int = 300
    batch_size: int = 64
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-3
    held_out: float = 0.2
    seed: int = 0
    max_new_tokens: int = 48
    generation_batch_size: int = 8
    checkpoint_every: int = 25
    eval_every: int = 50
    eval_rows: int = 128
    matmul_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    params_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_new_tokens", "generation_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 < self.held_out < 1:
            raise UsageError(f"held_out must be a fraction between 0 and 1 (got {self.held_out})")
        if self.optimizer not in ("sgd", "adam"):
            raise UsageError(f"unknown optimizer '{self.optimizer}'; use sgd or adam")
        if self.params_dtype not in PARAM_DTYPES:
            raise UsageError(
                f"params dtype must be one of {', '.join(PARAM_DTYPES)} (got {self.params_dtype})"
            )
        if self.matmul_dtype not in ("bfloat16", "float32"):
            raise UsageError(f"matmul dtype must be bfloat16 or float32 (got {self.matmul_dtype})")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 * (1 - self.momentum) if self.optimizer == "sgd" else 1e-3


def train_lens(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    out: str | Path,
    settings: LensTrainingSettings | None = None,
    data_note: dict[str, Any] | None = None,
    report: Report = lambda message: None,
) -> dict[str, Any]:
    """Collect, split, train, evaluate and write the lens into ``out``; returns the manifest (resumable).

    ``data_note`` is recorded in the manifest as where the samples came from (source, seed, ...).
    """
    settings = settings or LensTrainingSettings()
    out = Path(out)
    _check_same_run(out, loaded, samples, settings)
    manifest = atomic.read_json(out / MANIFEST)
    if manifest is not None and manifest.get("complete") and (out / PARAMS_FILE).is_file():
        report(f"already trained: {out}")
        return manifest
    started = time.monotonic()
    failures = collect_states(
        loaded,
        samples,
        out,
        settings.max_new_tokens,
        settings.generation_batch_size,
        progress=lambda done, total: report(f"generating: {done}/{total} samples"),
    )
    data = load_states(out)
    train, held = split_rows(data, settings.held_out)
    report(
        f"data: {len(data)} generated steps of {len(set(data.sample_ids))} samples; "
        f"{len(train)} train, {len(held)} held out ({len(set(held.groups))} images)"
    )
    lens = TunedLens.identity(loaded.unembed, loaded.n_layers, loaded.name, loaded.revision)
    history = _optimize(lens, train, held, settings, out, report)
    report(f"evaluating on {len(held)} held-out steps")
    tuned_kl = kl_to_final(lens, held.states)
    logit_kl = kl_to_final(LogitLens(loaded.unembed), held.states)
    lens.save(out, PARAM_DTYPES[settings.params_dtype])
    saved = TunedLens.load(out, loaded.unembed, loaded.n_layers)
    manifest = {
        "complete": True,
        "model": loaded.name,
        "revision": loaded.revision,
        "format": "tuned-lens 0.2.0 (config.json + params.pt)",
        "params_dtype": settings.params_dtype,
        "params_sha256": saved.sha256,
        "data": {
            **(data_note or {}),
            "samples": len(samples),
            "failed": failures,
            "prompts": sorted({s.prompt for s in samples}),
            "generated_steps": {"train": len(train), "held_out": len(held)},
            "images": {"train": len(set(train.groups)), "held_out": len(set(held.groups))},
            "samples_sha256": samples_fingerprint(samples),
        },
        "training": {**asdict(settings), "learning_rate": settings.learning_rate, "history": history},
        "held_out_kl": kl_summary(tuned_kl, logit_kl),
        "held_out_kl_saved_params": kl_summary(kl_to_final(saved, held.states), logit_kl)["tuned_mean"]
        if settings.params_dtype != "float32"
        else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic.write_json(out / MANIFEST, manifest)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return manifest


def split_rows(data: LensData, held_out: float) -> tuple[LensData, LensData]:
    """(train, held-out): whole images go to the held-out side when a hash of their group falls below
    ``held_out`` (stable under reruns and additions); both sides must be non-empty."""
    held = torch.tensor([_unit_hash(group) < held_out for group in data.groups])
    if bool(held.all()) or not bool(held.any()):
        raise UsageError(
            f"{len(set(data.groups))} images are too few for a held-out split of {held_out:.0%}; "
            "give more images"
        )
    return data.subset((~held).nonzero().flatten()), data.subset(held.nonzero().flatten())


@torch.no_grad()
def kl_to_final(lens: Lens, states: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """KL(p_L || p_l) of every row and lens layer under ``lens``: states (N, L+1, d) -> (N, L+1) fp32 nats."""
    rows = []
    for start in range(0, states.shape[0], chunk):
        logq = torch.log_softmax(lens.layer_logits(states[start : start + chunk]), dim=-1)
        final = logq[:, -1:]
        kl = (final.exp() * (final - logq)).sum(-1)
        kl[:, -1] = 0.0  # p_L against itself
        rows.append(kl.cpu())
    return torch.cat(rows)


def kl_summary(tuned: torch.Tensor, logit: torch.Tensor) -> dict[str, Any]:
    """Per-layer held-out means (N, L+1) -> lists, and the means over layers 1..L-1, for both lenses."""
    tuned_layers, logit_layers = tuned.double().mean(0), logit.double().mean(0)
    middle = slice(1, tuned.shape[1] - 1)
    tuned_mean, logit_mean = float(tuned_layers[middle].mean()), float(logit_layers[middle].mean())
    return {
        "n_rows": int(tuned.shape[0]),
        "tuned": [round(float(v), 5) for v in tuned_layers],
        "logit": [round(float(v), 5) for v in logit_layers],
        "tuned_mean": round(tuned_mean, 5),
        "logit_mean": round(logit_mean, 5),
        "ratio": round(tuned_mean / logit_mean, 5) if logit_mean > 0 else None,
        "lower_at_every_layer": bool((tuned_layers[middle] < logit_layers[middle]).all()),
        "layers_of_the_means": [1, tuned.shape[1] - 2],
    }


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 of the samples' ids, images and prompts (what decides the training data)."""
    text = "\n".join(f"{s.sample_id}\t{s.image}\t{s.prompt}" for s in samples)
    return hashlib.sha256(text.encode()).hexdigest()


def _optimize(
    lens: TunedLens,
    train: LensData,
    held: LensData,
    settings: LensTrainingSettings,
    out: Path,
    report: Report,
) -> list[dict[str, float]]:
    """The training loop, from the checkpoint when there is one; returns the periodic held-out checks."""
    parameters = [p for p in (lens.weight, lens.bias) if p is not None]
    optimizer = _optimizer(parameters, settings)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings))
    start, history = _resume(out, lens, optimizer, schedule, report)
    unembed = lens.unembed
    matmul_weight = unembed.weight.to(getattr(torch, settings.matmul_dtype))
    eval_states = held.states[: settings.eval_rows]
    norm_parameters = [p for p in unembed.final_norm.parameters() if p.requires_grad]
    for p in norm_parameters:  # the readout is frozen: no gradients for the model's own norm
        p.requires_grad_(False)
    try:
        for step in range(start, settings.steps):
            rows = _batch_rows(len(train), settings.batch_size, settings.seed, step)
            loss = _step_loss(lens, unembed, matmul_weight, train.states[rows])
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            done = step + 1
            if done % settings.eval_every == 0 or done == settings.steps:
                held_kl = float(kl_to_final(lens, eval_states)[:, 1:-1].double().mean())
                history.append({"step": done, "train_kl": round(loss, 5), "held_out_kl": round(held_kl, 5)})
                report(
                    f"step {done}/{settings.steps}: train KL {loss:.4f} (mean over layers), "
                    f"held-out KL {held_kl:.4f} (layers 1..L-1, {len(eval_states)} steps)"
                )
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                _save_checkpoint(out, lens, optimizer, schedule, done, history)
    finally:
        for p in norm_parameters:
            p.requires_grad_(True)
    return history


def _step_loss(lens: TunedLens, unembed: Unembed, matmul_weight: torch.Tensor, states: torch.Tensor) -> float:
    """Backpropagate sum_l mean KL(p_L || p_l) for one batch (B, L+1, d), one layer at a time (as
    ``tuned-lens`` does, so only one (B, V) block is alive); returns the mean over layers."""
    states = states.to(lens.weight.device, torch.float32)
    with torch.no_grad():
        target = torch.log_softmax(unembed.logits(states[:, -1]), dim=-1)
        target_p = target.exp()
    total = 0.0
    for layer in range(lens.n_layers):
        hidden = lens.translate_layer(states[:, layer], layer)
        logq = torch.log_softmax(_readout(unembed, matmul_weight, hidden), dim=-1)
        kl = (target_p * (target - logq)).sum(-1).mean()
        kl.backward()
        total += float(kl.detach())
    return total / lens.n_layers


def _readout(unembed: Unembed, weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """unembedding(final_norm(h)), the product in ``weight``'s dtype, with gradients: (B, d) -> (B, V)."""
    normed = unembed.norm(hidden)
    logits = nn.functional.linear(normed.to(weight.dtype), weight).float()
    if unembed.bias is not None:
        logits = logits + unembed.bias
    if unembed.softcap:
        logits = unembed.softcap * torch.tanh(logits / unembed.softcap)
    return logits


def _schedule(settings: LensTrainingSettings) -> Callable[[int], float]:
    """``tuned-lens``'s: linear warmup (Adam: a fifth of the steps; SGD: none), then linear decay to 0."""
    warmup = settings.steps // 5 if settings.optimizer == "adam" else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (settings.steps - step) / (settings.steps - warmup))

    return factor


def _optimizer(parameters: list[nn.Parameter], settings: LensTrainingSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=settings.learning_rate,
            momentum=settings.momentum,
            nesterov=True,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(
        parameters,
        lr=settings.learning_rate,
        betas=(settings.momentum, 0.999),
        weight_decay=settings.weight_decay,
    )


def _batch_rows(n_rows: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The rows of one step: a function of (seed, step) alone, so a resumed run sees the same batches."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randperm(n_rows, generator=generator)[: min(batch_size, n_rows)]


def _save_checkpoint(
    out: Path,
    lens: TunedLens,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    history: list[dict[str, float]],
) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "step": step,
            "lens": lens.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": history,
        },
        buffer,
    )
    atomic.write_bytes(out / CHECKPOINT, buffer.getvalue())


def _resume(
    out: Path,
    lens: TunedLens,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    report: Report,
) -> tuple[int, list[dict[str, float]]]:
    path = out / CHECKPOINT
    if not path.is_file():
        return 0, []
    state = torch.load(path, map_location=lens.weight.device, weights_only=True)
    lens.load_state_dict(state["lens"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    report(f"resuming from step {state['step']} ({path})")
    return int(state["step"]), list(state["history"])


def _check_same_run(
    out: Path, loaded: LoadedModel, samples: Sequence[Sample], settings: LensTrainingSettings
) -> None:
    """``out/training.json`` records model, data and settings. A rerun must generate the same data (model,
    samples, generation settings, split); other training settings may change only before training started
    (no checkpoint, no finished lens), so that collected states are reused."""
    record = json.loads(
        atomic.json_text(
            {
                "model": loaded.name,
                "revision": loaded.revision,
                "samples_sha256": samples_fingerprint(samples),
                "settings": asdict(settings),
            }
        )
    )
    existing = atomic.read_json(out / SETTINGS)
    if existing is not None and existing != record:
        data_keys = ("max_new_tokens", "generation_batch_size", "held_out")
        changed = [key for key in ("model", "revision", "samples_sha256") if existing.get(key) != record[key]]
        old, new = existing.get("settings") or {}, record["settings"]
        changed += [key for key in data_keys if old.get(key) != new[key]]
        started = (out / CHECKPOINT).is_file() or (out / MANIFEST).is_file()
        if started:
            changed += [key for key in new if key not in data_keys and old.get(key) != new[key]]
        if changed:
            raise UsageError(
                f"{out} holds a lens trained with other settings ({', '.join(changed)}); "
                "choose another --out (or the same command to resume)"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / SETTINGS, record)


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) from ``text``."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12
